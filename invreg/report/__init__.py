"""``invreg report``: one invariance report per checkpoint set (:mod:`invreg.report.load`)."""

from invreg.report.load import *  # noqa: F403
from invreg.report.load import _drift  # noqa: F401
