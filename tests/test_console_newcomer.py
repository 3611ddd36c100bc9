"""What "done" means for the console: a newcomer runs ``make run`` (here the command it runs,
``grayrelease serve --load-examples``, in a process of its own), opens the address it prints,
logs in with the token it prints, and in the browser alone takes one of the spec's scenarios
from draft to completed and another to rollback."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from .console_browser import (
    browser_page,
    chromium,
    click_action,
    expect,
    fill_basics,
    fill_canary,
    fill_key,
    open_dialog,
    save_plan,
    sign_in,
    status_is,
)
from .demo_server import demo_server


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_newcomer_completes_one_spec_scenario_and_rolls_back_another(tmp_path: Path) -> None:
    with (
        demo_server(f"sqlite:///{tmp_path / 'run.db'}") as served,
        chromium() as browser,
        browser_page(browser) as page,
    ):
        printed = re.search(r"web console at (\S+) \(log in with the token\)", served.banner[2])
        assert printed is not None, served.banner
        console = printed.group(1)
        sign_in(page, console, served.token)
        current = page.locator("dialog .key-row [data-testid=current-value]")

        # The spec's feature switch: 10% of instances, then everyone.
        open_dialog(page)
        fill_basics(page, "新功能开关灰度", "order-service")
        page.select_option("dialog select[name=grayStrategy]", "PERCENTAGE")
        page.fill("dialog input[name=percentage]", "10")
        fill_key(page, 0, "feature.newPayment.enabled", "true")
        expect(current.nth(0)).to_have_text("false")  # the value make run seeded
        switch = save_plan(page)
        click_action(page, "start")
        status_is(page, "ACTIVE")
        value = (
            f"{served.base}/api/gray-release/config/value?appName=order-service"
            "&environment=prod&configKey=feature.newPayment.enabled&instanceId=order-{n}"
        )
        answers = [get(value.format(n=n)) for n in range(100)]
        assert 0 < sum(answer["gray"] for answer in answers) < 30
        page.locator("[data-testid=instances] tbody tr:not(.empty)").first.wait_for()
        click_action(page, "complete", confirm=True)
        status_is(page, "COMPLETED")
        item = (
            f"{served.base}/api/config/item?appName=order-service&environment=prod"
            "&groupName=default&configKey=feature.newPayment.enabled"
        )
        assert get(item) == {"value": "true"}  # in the config center, for everyone

        # The spec's canary: the canary instance first, then rolled back.
        page.goto(f"{console}#/plans")
        open_dialog(page)
        fill_basics(page, "缓存配置金丝雀发布", "cache-service")
        fill_canary(page, "192.168.1.200", step=20, interval=30)
        fill_key(page, 0, "redis.cluster.nodes", "10.0.0.1:6379,10.0.0.2:6379")
        expect(current.nth(0)).to_have_text("10.0.0.1:6379")
        canary = save_plan(page)
        click_action(page, "start")
        status_is(page, "ACTIVE")
        nodes = (
            f"{served.base}/api/gray-release/config/value?appName=cache-service"
            "&environment=prod&configKey=redis.cluster.nodes&instanceId=cache-1"
            "&instanceIp=192.168.1.200"
        )
        assert get(nodes)["value"] == "10.0.0.1:6379,10.0.0.2:6379"
        click_action(page, "rollback", confirm=True, reason="缓存命中率下降")
        status_is(page, "ROLLBACK")
        assert get(nodes) == {"value": "10.0.0.1:6379", "gray": False, "planId": None}

        # The list tells both stories.
        page.goto(f"{console}#/plans")
        for plan_id, status in ((switch, "COMPLETED"), (canary, "ROLLBACK")):
            row = page.locator(f"table.plans tbody tr[data-plan-id='{plan_id}']")
            expect(row).to_have_attribute("data-status", status)
