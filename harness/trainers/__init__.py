"""Built-in trainer plugins (``grpo``, ``dr_grpo``), registered through the same
entry-point group as any third-party trainer."""
