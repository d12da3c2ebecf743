import os

from hypothesis import HealthCheck, settings

# Property tests run thousands of random cases per op (see tests/golden); no deadline,
# since the shared machine's timing is noisy. HYPOTHESIS_PROFILE=quick for local loops.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile("quick", parent=settings.get_profile("default"), max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
