"""The HTML report: its sections, and rendering in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from click.testing import CliRunner

from campaign import api
from campaign.cli import main
from campaign.errors import ConfigError
from campaign.report import NOT_AVAILABLE
from sharing_data import campaign_spec, fill_campaign

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SECTIONS = ("Definition", "Progress", "Model versions", "SHAP values", "Posterior", "Profile likelihoods", "Validation")
#: Images of the filled campaign: progress, metrics, SHAP bar, SHAP interactions,
#: corner, profiles and validation.
EXPECTED_IMAGES = 7


@pytest.fixture
def report_path(sqlite_url, tmp_path):
    fill_campaign(sqlite_url)
    return api.open_campaign("toy", sqlite_url).report(tmp_path / "report.html")


def test_report_has_every_section(report_path):
    page = report_path.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert NOT_AVAILABLE not in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == EXPECTED_IMAGES


def test_report_is_self_contained(report_path):
    page = report_path.read_text()
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page


def test_report_lists_posterior_summaries(report_path):
    page = report_path.read_text()
    assert "<td class=text>a</td>" in page
    assert "acceptance fraction 0.3" in page
    assert "converged" in page


def test_empty_campaign_sections_not_available(sqlite_url, tmp_path):
    fit = api.create_campaign(campaign_spec("empty"), sqlite_url, check=False)
    page = fit.report(tmp_path / "empty.html").read_text()
    assert page.count(NOT_AVAILABLE) == len(SECTIONS) - 1
    assert "<img" not in page


def test_cli_report_unknown_campaign(sqlite_url, tmp_path):
    fill_campaign(sqlite_url)
    runner = CliRunner()
    output = tmp_path / "cli.html"
    result = runner.invoke(main, ["--db", sqlite_url, "report", "toy", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert output.stat().st_size > 10_000
    missing = runner.invoke(main, ["--db", sqlite_url, "report", "nope", "-o", str(tmp_path / "x.html")])
    assert missing.exit_code == 2
    assert "'nope' not found" in missing.output


def test_report_missing_directory_rejected(sqlite_url, tmp_path):
    fill_campaign(sqlite_url)
    runner = CliRunner()
    output = tmp_path / "nodir" / "r.html"
    result = runner.invoke(main, ["--db", sqlite_url, "report", "toy", "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert f"the directory {tmp_path / 'nodir'} does not exist" in result.output
    assert "Traceback" not in result.output
    assert not output.parent.exists()
    with pytest.raises(ConfigError, match="it is a directory"):
        api.open_campaign("toy", sqlite_url).report(tmp_path)


def _browser_or_skip():
    """Return selenium's webdriver module, or skip (fail under CI=true) when the browser is missing."""
    reasons = []
    if not shutil.which(CHROMIUM):
        reasons.append(f"{CHROMIUM} not found (apt-get install chromium)")
    if not shutil.which(CHROMEDRIVER):
        reasons.append(f"{CHROMEDRIVER} not found (apt-get install chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        reasons.append("selenium is not installed (pip install -e '.[test]')")
        webdriver = None
    if reasons:
        message = "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test needs Chromium in CI: {message}")
        pytest.skip(message)
    return webdriver


def test_report_renders_in_chromium(report_path, tmp_path):
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(60)
        driver.get(report_path.as_uri())
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);"
        )
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert errors == []
    assert headings == list(SECTIONS)
    assert len(widths) == EXPECTED_IMAGES
    assert all(width > 0 for width in widths), widths
