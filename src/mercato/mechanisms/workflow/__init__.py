"""Workflow procurement (STAR): truthful, topology-aware routing of an agentic workflow DAG.

Pure math like the rest of :mod:`mercato.mechanisms`: the model, three exact solvers, critical-
value payments and the paper's two baselines. Reading YAML and printing live in
:mod:`mercato.star`.
"""

from mercato.mechanisms.workflow.baselines import run_homogeneous, run_myopic
from mercato.mechanisms.workflow.junction_tree import JunctionTreeSolver
from mercato.mechanisms.workflow.market import WorkflowMarket
from mercato.mechanisms.workflow.model import Agent, Edge, Node, Workflow, capability, split_inputs
from mercato.mechanisms.workflow.outcome import ProcurementOutcome
from mercato.mechanisms.workflow.payments import PAYMENT_METHODS, Breakpoint, critical_payment
from mercato.mechanisms.workflow.properties import check_procurement_dsic, check_procurement_ir
from mercato.mechanisms.workflow.solve import SOLVER_NAMES, AllocationSolver, allocate, make_solver
from mercato.mechanisms.workflow.star import run_star, star_payments

__all__ = [
    "PAYMENT_METHODS",
    "SOLVER_NAMES",
    "Agent",
    "AllocationSolver",
    "Breakpoint",
    "Edge",
    "JunctionTreeSolver",
    "Node",
    "ProcurementOutcome",
    "Workflow",
    "WorkflowMarket",
    "allocate",
    "capability",
    "check_procurement_dsic",
    "check_procurement_ir",
    "critical_payment",
    "make_solver",
    "run_homogeneous",
    "run_myopic",
    "run_star",
    "split_inputs",
    "star_payments",
]
