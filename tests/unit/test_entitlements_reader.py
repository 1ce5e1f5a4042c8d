"""The backend services' read library against items of the published shape."""

from __future__ import annotations

from typing import Any

from entitlements_reader import EntitlementsReader, parse_entitlements_item, parse_user_entitlements_item

ITEM: dict[str, Any] = {
    "pk": {"S": "CUSTOMER#cus_1"},
    "sk": {"S": "ENTITLEMENTS"},
    "customer_id": {"S": "cus_1"},
    "livemode": {"BOOL": True},
    "features": {
        "M": {
            "pro": {"M": {"source": {"S": "sub_1"}}},
            "reports": {"M": {"until": {"NULL": True}, "source": {"S": "entitlements"}}},
            "course": {"M": {"until": {"N": "2000"}, "source": {"S": "cs_1"}}},
        }
    },
    "payment_issue": {"BOOL": True},
    "updated_at": {"N": "1500"},
    "version": {"N": "7"},
    "deleted": {"BOOL": False},
}


class RecordingDynamoDB:
    def __init__(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.items = items
        self.requests: list[dict[str, Any]] = []

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        key = (request["Key"]["pk"]["S"], request["Key"]["sk"]["S"])
        return {"Item": self.items[key]} if key in self.items else {}


def test_until_absent_null_or_later_than_now_grants() -> None:
    access = parse_entitlements_item(ITEM)
    assert access.active_features(now=1999) == {"pro", "reports", "course"}
    assert access.active_features(now=2000) == {"pro", "reports"}
    assert access.has("course", now=1999)
    assert not access.has("course", now=2000)
    assert not access.has("missing", now=0)
    assert (access.payment_issue, access.version, access.livemode, access.deleted) == (True, 7, True, False)


def test_each_read_is_one_strongly_consistent_get_item() -> None:
    dynamodb = RecordingDynamoDB(
        {
            ("CUSTOMER#cus_1", "ENTITLEMENTS"): ITEM,
            ("USER#live#u-1", "CUSTOMER"): {"customer_id": {"S": "cus_1"}},
        }
    )
    reader = EntitlementsReader("table", livemode=True, client=dynamodb)
    assert reader.customer_for_user("u-1") == "cus_1"
    assert reader.customer_for_user("u-1", livemode=False) is None
    assert reader.entitlements("cus_1") is not None
    assert reader.entitlements("cus_unknown") is None
    assert len(dynamodb.requests) == 4
    assert all(r["ConsistentRead"] is True and r["TableName"] == "table" for r in dynamodb.requests)
    assert dynamodb.requests[1]["Key"]["pk"] == {"S": "USER#test#u-1"}


def test_every_read_names_its_attributes_so_the_reader_policy_allows_it() -> None:
    from entitlements_reader import ENTITLEMENTS_ATTRIBUTES, LOOKUP_ATTRIBUTES

    dynamodb = RecordingDynamoDB({("CUSTOMER#cus_1", "ENTITLEMENTS"): ITEM})
    reader = EntitlementsReader("table", client=dynamodb)
    reader.entitlements("cus_1")
    reader.customer_for_user("u-1")

    for request, expected in zip(
        dynamodb.requests, (ENTITLEMENTS_ATTRIBUTES, LOOKUP_ATTRIBUTES), strict=True
    ):
        names = request["ExpressionAttributeNames"]
        projected = [names[part.strip()] for part in request["ProjectionExpression"].split(",")]
        assert tuple(projected) == expected


def test_a_projected_read_of_a_real_item_parses_under_moto() -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_table(
            TableName="sync",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="sync", Item={**ITEM, "records_version": {"N": "3"}})
        client.put_item(
            TableName="sync",
            Item={"pk": {"S": "USER#live#u-1"}, "sk": {"S": "CUSTOMER"}, "customer_id": {"S": "cus_1"}},
        )
        reader = EntitlementsReader("sync", client=client)
        access = reader.entitlements(reader.customer_for_user("u-1") or "")

    assert access is not None
    assert access.active_features(now=1999) == {"pro", "reports", "course"}


USER_ITEM: dict[str, Any] = {
    "pk": {"S": "USER#live#u-1"},
    "sk": {"S": "ENTITLEMENTS"},
    "user_id": {"S": "u-1"},
    "customer_ids": {"L": [{"S": "cus_1"}, {"S": "cus_2"}]},
    "livemode": {"BOOL": True},
    "features": {
        "M": {
            "course": {"M": {"source": {"S": "cs_1"}}},
            "pro": {"M": {"until": {"N": "2000"}, "source": {"S": "sub_2"}}},
        }
    },
    "payment_issue": {"BOOL": False},
    "updated_at": {"N": "1500"},
    "version": {"N": "3"},
    "deleted": {"BOOL": False},
}


def test_a_users_access_is_read_from_the_user_entitlements_item_by_its_projection() -> None:
    from entitlements_reader import USER_ENTITLEMENTS_ATTRIBUTES

    dynamodb = RecordingDynamoDB({("USER#live#u-1", "ENTITLEMENTS"): USER_ITEM})
    reader = EntitlementsReader("table", livemode=True, client=dynamodb)
    access = reader.user_entitlements("u-1")
    assert access == parse_user_entitlements_item(USER_ITEM)
    assert access is not None
    assert access.customer_ids == ("cus_1", "cus_2")
    assert access.active_features(now=1999) == {"course", "pro"}
    assert not access.has("pro", now=2000)
    assert reader.user_entitlements("u-1", livemode=False) is None
    request = dynamodb.requests[0]
    assert request["ConsistentRead"] is True
    names = request["ExpressionAttributeNames"]
    projected = tuple(names[part.strip()] for part in request["ProjectionExpression"].split(","))
    assert projected == USER_ENTITLEMENTS_ATTRIBUTES
    assert dynamodb.requests[1]["Key"]["pk"] == {"S": "USER#test#u-1"}
