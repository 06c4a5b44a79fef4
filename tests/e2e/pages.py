"""What the e2e tests do on the page, as small blocking functions (Selenium): each wait is bounded."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import shot


def wait_for(driver: Any, css: str, timeout: float = 15.0, visible: bool = True) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cond = ec.visibility_of_element_located if visible else ec.presence_of_element_located
    return WebDriverWait(driver, timeout).until(cond((By.CSS_SELECTOR, css)))


def wait_until(driver: Any, check: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def click(driver: Any, css: str, timeout: float = 15.0) -> None:
    wait_for(driver, css, timeout).click()


def sign_in_as_guest(driver: Any, url: str, name: str) -> None:
    driver.get(url)
    wait_for(driver, "#name").send_keys(name)
    click(driver, "#guest-go")
    wait_for(driver, "#queue-go")


def banner(driver: Any, contains: str, timeout: float = 10.0) -> str:
    """The alert banner's text once it shows ``contains``; it must be a role=alert region."""
    el = wait_for(driver, "#banner", timeout)
    wait_until(driver, lambda d: contains in el.text, timeout)
    assert el.get_attribute("role") == "alert"
    return str(el.text)


def passage_at_go(driver: Any, timeout: float = 20.0) -> str:
    """Wait for the race screen and the start ("Go!", on the server's clock); the passage."""
    wait_for(driver, "#screen-race", timeout)
    script = "return document.getElementById('passage-plain').textContent"
    wait_until(driver, lambda d: d.execute_script(script), timeout)
    passage = str(driver.execute_script(script))
    wait_until(driver, lambda d: text(d, "#countdown").startswith("Go"), timeout)
    return passage


def key_gap_s(rng: random.Random) -> float:
    """A fast human's gap between keys: log-normal (right-skewed, as people type; uniform jitter is
    what fair play's rhythm rules flag as a machine), median 75 ms, the odd slow reach to 300 ms."""
    return min(0.3, rng.lognormvariate(math.log(0.075), 0.4))


def type_text(driver: Any, chars: str, rng: random.Random) -> None:
    """Type like a fast human: ~100-140 WPM with irregular gaps (fair play does not flag it)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "typing")
    for ch in chars:
        box.send_keys(ch)
        time.sleep(key_gap_s(rng))


def results(driver: Any, name: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait for the results screen; what it shows about this player and everyone."""
    from selenium.webdriver.common.by import By

    wait_for(driver, "#screen-results", timeout)
    shot(driver, name)
    rows = driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
    return {
        "place": text(driver, "#my-place"),
        "wpm": float(text(driver, "#my-wpm")),
        "rows": [r.text for r in rows],
    }
