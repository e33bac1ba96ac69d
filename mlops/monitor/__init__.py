"""Production monitoring: profiles of served traffic, windows, labels, estimated quality, alerts.

- ``profile``  deterministic, mergeable profiles (fixed bins from the reference, exact sums)
- ``compare``  drift distances computed from two profiles
- ``store``    profiles of request-log files under ``.mlops/monitor/<model>/``, built once each
- ``service``  requests per slot and status, and a mergeable fixed-bin latency histogram

Above ``drift`` and ``serve`` in the layer list: it reads drift's statistics and serve's request
logs; neither imports it.
"""
