"""Pure mechanism math (numpy/scipy only, no I/O): allocation, payments and property checks."""

from mercato.mechanisms.bmatching import Matching, solve_bmatching
from mercato.mechanisms.vcg import AuctionOutcome, run_vcg_auction, run_vcg_auction_naive

__all__ = [
    "AuctionOutcome",
    "Matching",
    "run_vcg_auction",
    "run_vcg_auction_naive",
    "solve_bmatching",
]
