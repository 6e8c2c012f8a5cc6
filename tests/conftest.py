import os

from hypothesis import HealthCheck, settings

# CI: derandomised so a red run is reproducible; locally: random exploration.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=int(os.environ.get("HVP_EXAMPLES", 100)),
                          suppress_health_check=[HealthCheck.filter_too_much,
                                                 HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=int(os.environ.get("HVP_EXAMPLES", 100)),
                          suppress_health_check=[HealthCheck.filter_too_much,
                                                 HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
