"""Drives the page of `orbitmesh serve` in headless Chromium (Debian's chromium and
chromium-driver, through python3-selenium): uploads a photo, waits for the job to end, and
prints what the page shows as one JSON object; saves a screenshot of the 3D viewer. Then uploads
BAD_PHOTO, whose job fails, and adds what the page says of it.

    /usr/bin/python3 tests/cli/serve_page.py URL PHOTO SCREENSHOT.png BAD_PHOTO
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

url, photo, screenshot, bad_photo = sys.argv[1:5]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
# No GPU here: WebGL through SwiftShader, Chromium's CPU renderer.
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--window-size=1200,1800", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(url + "/")
    Select(driver.find_element(By.ID, "preset")).select_by_value("fast")
    driver.find_element(By.ID, "image").send_keys(photo)
    driver.find_element(By.ID, "submit").click()
    body = driver.find_element(By.TAG_NAME, "body")
    WebDriverWait(driver, 600, poll_frequency=0.5).until(
        lambda d: body.get_attribute("data-job-state") in ("done", "failed", "cancelled"))
    state = body.get_attribute("data-job-state")
    # The viewer's `loaded` turns true once the model is in the scene.
    if state == "done":
        WebDriverWait(driver, 120, poll_frequency=0.5).until(
            lambda d: d.execute_script("return document.getElementById('viewer').loaded === true"))
        time.sleep(2)
    viewer = driver.find_element(By.ID, "viewer")
    driver.execute_script("arguments[0].scrollIntoView()", viewer)
    with open(screenshot, "wb") as f:
        f.write(viewer.screenshot_as_png)
    report = {
        "state": state,
        "error": driver.find_element(By.ID, "job-error").text,
        "stages": {li.get_attribute("data-stage"): li.get_attribute("data-state")
                   for li in driver.find_elements(By.CSS_SELECTOR, "#stages li")},
        "frames": driver.execute_script(
            "return [...document.querySelectorAll('#frames img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length"),
        "prepared": driver.execute_script(
            "return document.getElementById('prepared-img').naturalWidth"),
        "downloads": [a.get_attribute("download")
                      for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")],
        "jobs_listed": len(driver.find_elements(By.CSS_SELECTOR, "#jobs a")),
        "sv3d_choice_shown": driver.find_element(By.ID, "generator-label").is_displayed(),
    }
    # A job that fails: the page says so, with the pipeline's error.
    driver.find_element(By.ID, "image").send_keys(bad_photo)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 120, poll_frequency=0.5).until(
        lambda d: body.get_attribute("data-job-state") == "failed")
    report["failed_state"] = driver.find_element(By.ID, "job-state").text
    report["failed_error"] = driver.find_element(By.ID, "job-error").text
    print(json.dumps(report))
finally:
    driver.quit()
