"""Regenerate the sample datasets in this directory, byte for byte.

    python data/generate.py            # rewrite orders.jsonl, payments.jsonl, clickstream.jsonl
    python data/generate.py --check    # exit 1 if the files on disk differ from what the seed gives
    python data/generate.py --out DIR  # write them somewhere else

Everything comes from one `random.Random(SEED)` per dataset and a fixed start time, so the
output depends on nothing but this file (no clock, no locale, no hash ordering). Lines are
JSON with keys in a fixed order and no spaces; floats are rounded to cents. See README.md for
the fields.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEED = 20240501
START = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
ORDERS = 400
SESSIONS = 220

CATALOG = [  # sku, name, category, unit price in EUR
    ("SKU-1001", "espresso beans 1kg", "coffee", 24.90),
    ("SKU-1002", "filter coffee 500g", "coffee", 11.50),
    ("SKU-1003", "decaf beans 500g", "coffee", 13.90),
    ("SKU-2001", "ceramic mug", "kitchen", 9.00),
    ("SKU-2002", "pour-over dripper", "kitchen", 21.00),
    ("SKU-2003", "milk frother", "kitchen", 34.50),
    ("SKU-2004", "burr grinder", "kitchen", 89.00),
    ("SKU-3001", "paper filters x100", "supplies", 4.20),
    ("SKU-3002", "descaler", "supplies", 7.80),
    ("SKU-4001", "gift card", "gifts", 25.00),
]
COUNTRIES = [("DE", "EUR"), ("FR", "EUR"), ("NL", "EUR"), ("GB", "GBP"), ("US", "USD")]
FX = {"EUR": 1.0, "GBP": 0.86, "USD": 1.08}  # fixed rates: prices are set in EUR
CUSTOMERS = 120
PAYMENT_METHODS = ["card", "card", "card", "paypal", "bank_transfer"]
FAILURES = ["insufficient_funds", "card_declined", "expired_card", "fraud_suspected"]
PAGES = [
    "/",
    "/search",
    "/category/coffee",
    "/category/kitchen",
    "/product",
    "/cart",
    "/checkout",
    "/checkout/payment",
    "/order/confirmed",
    "/help",
]
DEVICES = ["desktop", "mobile", "mobile", "tablet"]
REFERRERS = ["direct", "search", "newsletter", "social", "ads"]


def iso(t: datetime) -> str:
    """UTC time with milliseconds and a Z, e.g. 2024-05-01T09:00:00.000Z."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def orders() -> list[dict]:
    rng = random.Random(SEED)
    out = []
    t = START
    for n in range(1, ORDERS + 1):
        t += timedelta(milliseconds=rng.randint(200, 9000))
        country, currency = rng.choice(COUNTRIES)
        lines = []
        for sku, name, category, price in rng.sample(CATALOG, rng.randint(1, 3)):
            qty = rng.choice([1, 1, 1, 2, 2, 3])
            unit = round(price * FX[currency], 2)
            lines.append({"sku": sku, "name": name, "category": category, "qty": qty, "unit_price": unit})
        amount = round(sum(item["qty"] * item["unit_price"] for item in lines), 2)
        out.append(
            {
                "order_id": f"o-{n:05d}",
                "customer_id": f"c-{rng.randint(1, CUSTOMERS):04d}",
                "created_at": iso(t),
                "items": lines,
                "amount": amount,
                "currency": currency,
                "country": country,
                "channel": rng.choice(["web", "web", "app"]),
                "shipping": rng.choice(["standard", "standard", "standard", "express"]),
            }
        )
    return out


def payments(order_list: list[dict]) -> list[dict]:
    rng = random.Random(SEED + 1)
    out = []
    for n, order in enumerate(order_list, start=1):
        created = datetime.fromisoformat(order["created_at"])
        failed = rng.random() < 0.08
        out.append(
            {
                "payment_id": f"p-{n:05d}",
                "order_id": order["order_id"],
                "customer_id": order["customer_id"],
                "processed_at": iso(created + timedelta(milliseconds=rng.randint(300, 4000))),
                "method": rng.choice(PAYMENT_METHODS),
                "amount": order["amount"],
                "currency": order["currency"],
                "status": "failed" if failed else "captured",
                "failure_reason": rng.choice(FAILURES) if failed else None,
            }
        )
    return out


def clickstream() -> list[dict]:
    rng = random.Random(SEED + 2)
    out = []
    t = START - timedelta(minutes=5)
    n = 0
    for s in range(1, SESSIONS + 1):
        t += timedelta(milliseconds=rng.randint(500, 15000))
        user = f"c-{rng.randint(1, CUSTOMERS):04d}" if rng.random() < 0.6 else None
        device, referrer = rng.choice(DEVICES), rng.choice(REFERRERS)
        at = t
        buying = rng.random() < 0.3
        path = ["/", *rng.sample(PAGES[1:6], rng.randint(1, 4))]
        if buying:
            path += ["/cart", "/checkout", "/checkout/payment", "/order/confirmed"]
        for page in path:
            at += timedelta(milliseconds=rng.randint(800, 30000))
            event = "page_view"
            if page == "/cart":
                event = "add_to_cart"
            elif page == "/order/confirmed":
                event = "purchase"
            n += 1
            sku = rng.choice(CATALOG)[0] if page in ("/product", "/cart") else None
            out.append(
                {
                    "event_id": f"e-{n:06d}",
                    "session_id": f"s-{s:04d}",
                    "user_id": user,
                    "ts": iso(at),
                    "event": event,
                    "page": page,
                    "sku": sku,
                    "device": device,
                    "referrer": referrer,
                }
            )
    out.sort(key=lambda e: (e["ts"], e["event_id"]))
    return out


def render(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True) + "\n" for r in rows).encode()


def datasets() -> dict[str, bytes]:
    order_list = orders()
    return {
        "orders.jsonl": render(order_list),
        "payments.jsonl": render(payments(order_list)),
        "clickstream.jsonl": render(clickstream()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, content in datasets().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_bytes() != content:
                stale.append(name)
            continue
        path.write_bytes(content)
        records = content.count(b"\n")
        print(f"{path}: {records} records, {len(content)} bytes")
    if stale:
        print(f"differs from the generator: {', '.join(stale)} (run python data/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
