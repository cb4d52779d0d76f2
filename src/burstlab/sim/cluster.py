"""N colocated replicas of one engine behind a router.

Each arrival goes to the active replica the router picks:

- ``round_robin``: replicas in turn;
- ``least_outstanding``: the fewest running, waiting and arriving requests (join
  the shortest queue);
- ``kv_aware``: the most free KV blocks, ties to the fewest outstanding.

Replicas are simulated together by :class:`~burstlab.sim.fleet.Fleet` (live
engines, every token exact); the result has the same shape as one engine's. With
a controller (autoscaling), replicas are launched and drained over time.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from burstlab.sim.engine import Engine
from burstlab.sim.fleet import SERVE, Controller, Fleet, Router


class ClusterConfig(BaseModel):
    """How many replicas, and how requests are spread over them."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(1, ge=1)
    router: Router = "round_robin"


class Cluster(Fleet):
    """``config.replicas`` colocated copies of ``engine``; ``run`` as :meth:`Engine.run`.

    ``controller`` (optional) launches and drains replicas over time, each taking
    ``startup_s`` to boot.
    """

    def __init__(
        self,
        engine: Engine,
        config: ClusterConfig,
        *,
        controller: Controller | None = None,
        startup_s: float = 0.0,
    ) -> None:
        super().__init__(
            engine,
            [SERVE] * config.replicas,
            router=config.router,
            controller=controller,
            startup_s=startup_s,
        )
        self.config = config
