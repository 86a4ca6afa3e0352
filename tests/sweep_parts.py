"""Sweep planning shared by the sweep tests (imports no experiment itself)."""


def plan_steps_sweep(grid, out_dir, **kwargs):
    """plan_sweep of test-sweep-steps over ``grid``, its workers importing sweep_experiments."""
    from plastix.sims.sweep import plan_sweep

    return plan_sweep(
        "test-sweep-steps", grid, out_dir=out_dir, imports=["sweep_experiments"], **kwargs
    )
