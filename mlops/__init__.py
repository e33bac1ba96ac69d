"""mlops: the production loop of machine learning inside your git repository.

The public Python API grows here (runs, metrics, models), imported lazily so that
`import mlops` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
