"""A quadratic chi2 with its minimum 0 at the origin, for tests."""


def chi2(**params):
    return float(sum(value**2 for value in params.values()))
