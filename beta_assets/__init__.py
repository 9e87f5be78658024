"""tickbeta's Dagster code location and the algorithm it runs (see README.md)."""

import warnings

# dagster_shared, not dagster: Spark's Python workers import this package for its numpy kernels,
# and importing dagster there would cost half a second per worker.
from dagster_shared.utils.warnings import BetaWarning, PreviewWarning

# We rely knowingly on Dagster features marked beta or preview (single-run backfills, observable
# source assets, code references). Their decorators warn when the asset modules are imported, on
# every command and every load of the code location, and nobody can act on it. Python imports this
# package before any of its modules, so the filter is in place before the first decorator runs.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
