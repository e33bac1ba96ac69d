"""Make the feature store demo's data (no download): daily order statistics per customer, some
written late (backfilled), and labelled customers with the time each label was observed.

python make_orders.py data    # data/order_stats.parquet and data/labels.parquet
"""

import datetime as dt
import random
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1] if len(sys.argv) > 1 else "data")
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(7)
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
rows, labels = [], []
for customer in range(1, 501):
    purchases, spent = 0, 0.0
    loyal = rng.random() < 0.6
    for day in range(60, 0, -5):
        event = now - dt.timedelta(days=day)
        bought = rng.randint(1, 4) if loyal else rng.randint(0, 1)
        purchases += bought
        spent += bought * rng.uniform(20, 80 if loyal else 40)
        late = dt.timedelta(days=rng.choice([0, 0, 0, 3]))  # one in four rows lands 3 days late
        avg = round(spent / purchases, 2) if purchases else None
        rows.append((customer, event, event + late, purchases, avg))
    labels.append((customer, now - dt.timedelta(days=rng.randint(2, 20)), int(not loyal)))
frame = pd.DataFrame(rows, columns=["customer_id", "event_ts", "created_ts", "total_purchases", "avg_order_value"])
frame.to_parquet(out / "order_stats.parquet", index=False)
labels_frame = pd.DataFrame(labels, columns=["customer_id", "event_timestamp", "churned"])
labels_frame.to_parquet(out / "labels.parquet", index=False)
print(f"wrote {out}/order_stats.parquet ({len(frame)} rows) and {out}/labels.parquet ({len(labels_frame)} customers)")
