"""STAR for users: YAML workflows and bidders, the paper's scenarios and market, `mercato star`."""
