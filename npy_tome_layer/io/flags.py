"""argparse types of the numbers a user gives on a command line: each the
argparse form of one rule of ``values.py``, so a flag and the Python API
refuse the same values with the same words. fairseq's parser (the plugin's
flags) and the tools' use them."""
from ..values import COSINE, FINITE, KEEP_RATE, POSITIVE, SHARE, whole_number_rule

keep_rate_flag = KEEP_RATE.flag  # (0, 1]
share_flag = SHARE.flag  # [0, 1]: 0 is a floor that is off
finite_number_flag = FINITE.flag  # a length penalty
cosine_flag = COSINE.flag  # a merge threshold
positive_number_flag = POSITIVE.flag  # a duration in seconds


def whole_number_flag(minimum: int):
    """A whole number >= ``minimum``."""
    return whole_number_rule(minimum).flag
