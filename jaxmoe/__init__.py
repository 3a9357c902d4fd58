"""jaxmoe: executable convergence-rate theory for softmax-gating mixture of experts.

See README.md and ../shared/reference/THEORY.md for the maths.
"""

from jaxmoe._errors import JaxMoEInputError
from jaxmoe.data import TruncatedNormalInputs, UniformInputs, get_input_law, sample_data
from jaxmoe.models import *  # noqa: F401,F403
from jaxmoe.presets import PRESET_NAMES, Setting, get_preset

__version__ = "0.1.0"
from jaxmoe.estimation import *  # noqa: F401,F403,E402
