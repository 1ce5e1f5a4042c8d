"""Who the customer is and whose account: an Accounts v2 customer, a connected account."""

from __future__ import annotations

from dataclasses import replace

from events.scenarios.story import DEFAULT_PARAMS, Scenario, ScenarioParams
from events.scenarios.subscriptions import paid_checkout_signup


def accounts_v2_signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return paid_checkout_signup(
        "accounts_v2_signup_paid",
        replace(params, customer_id=params.accounts_v2_customer),
        " An Accounts v2 customer: objects carry customer_account (acct_…) and customer null; "
        "there is no Customer object and no customer.created.",
    )


def connect_signup_paid(params: ScenarioParams = DEFAULT_PARAMS) -> Scenario:
    return paid_checkout_signup(
        "connect_signup_paid",
        replace(params, account=params.connect_account),
        " On a connected account: every event carries `account`.",
    )
