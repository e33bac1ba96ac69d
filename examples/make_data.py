"""Make the demo's data: a customer CSV and a folder of small text 'images'. No download.

python make_data.py data                # data/customers.csv and data/images/
python make_data.py data --next-month   # data/customers-next.csv: next month's customers, with
                                        # a planted shift (newer customers, a price rise, a new plan)
"""

import random
import sys
from pathlib import Path

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out = Path(args[0] if args else "data")
out.mkdir(parents=True, exist_ok=True)

if "--next-month" in sys.argv:
    rng = random.Random(43)
    with open(out / "customers-next.csv", "w") as f:
        f.write("customer_id,tenure,plan,monthly_charges,churned\n")
        for i in range(5000, 10000):
            # a marketing campaign brought many new customers: short tenures
            tenure = rng.randint(1, 12) if rng.random() < 0.4 else rng.randint(1, 72)
            plan = rng.choices(["basic", "standard", "premium", "enterprise"], weights=[30, 30, 30, 10])[0]
            charges = round(rng.uniform(10, 120) * 1.15, 2)  # a 15% price rise
            churned = int(rng.random() < (0.5 if tenure < 12 else 0.15))
            f.write(f"{i},{tenure},{plan},{charges},{churned}\n")
    print(
        f"wrote {out}/customers-next.csv (5000 rows; planted: shorter tenures, charges +15%, a new 'enterprise' plan)"
    )
    sys.exit(0)

rng = random.Random(42)
with open(out / "customers.csv", "w") as f:
    f.write("customer_id,tenure,plan,monthly_charges,churned\n")
    for i in range(5000):
        tenure = rng.randint(1, 72)
        plan = rng.choice(["basic", "standard", "premium"])
        charges = round(rng.uniform(10, 120), 2)
        churned = int(rng.random() < (0.5 if tenure < 12 else 0.15))
        f.write(f"{i},{tenure},{plan},{charges},{churned}\n")
for kind in ("cats", "dogs"):
    folder = out / "images" / kind
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(200):
        (folder / f"{kind[:-1]}_{i:04d}.txt").write_text(f"{kind} {i} " + "x" * rng.randint(100, 2000))
print(f"wrote {out}/customers.csv (5000 rows) and {out}/images/ (400 files)")
