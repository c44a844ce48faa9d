"""What operators see, across every worker: requests in flight (:mod:`.inflight`),
Prometheus metrics (:mod:`.metrics`), the admin API and live page
(:mod:`.control`, ``admin.html``), and the workers' control sockets
(:mod:`.cluster`)."""
