import os

from hypothesis import HealthCheck, settings

# Parity examples run real matrix products; wall-clock deadlines would only add flakiness.
settings.register_profile("numpyvae", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "numpyvae"))
