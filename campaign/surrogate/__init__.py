"""The two-stage XGBoost surrogate of chi2: model, training, tuning and model versions."""

from campaign.surrogate.model import SurrogateModel, combine_chi2
from campaign.surrogate.registry import load_model, register_model_version

__all__ = ["SurrogateModel", "combine_chi2", "load_model", "register_model_version"]
