"""Make the demo's data: a customer CSV and a folder of small text 'images'. No download."""

import random
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "data")
rng = random.Random(42)
out.mkdir(parents=True, exist_ok=True)
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
