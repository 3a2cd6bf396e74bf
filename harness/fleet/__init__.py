"""A fleet of runners sharing one PostgreSQL: `wgharness submit` queues jobs, and
`wgharness worker` runs them, one at a time per machine, storing each run with its
runner's name (docs/fleet.md). procrastinate is the queue; it is imported only when a
fleet command runs, so the harness works without it."""
