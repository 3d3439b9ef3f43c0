"""The vocoder model types: :data:`VOCODER_MODELS`, the registry behind ``model.type``.

Each type names its model class, its config dataclass, the training task that trains it
(``vocoder``: maximum likelihood, ``teacher``: the WaveNet teacher's, ``distill``: density
distillation) and its capabilities:

* ``parallel_density``: exact ``log p(audio | mel)`` of given audio in one parallel pass;
* ``can_teach``: usable as the frozen teacher of a distillation;
* ``parallel_sampling``: samples a whole utterance in one parallel pass (not sample by sample).

>>> VOCODER_MODELS.default, VOCODER_MODELS.get("wavenet_teacher").task
('waveglow', 'teacher')
>>> VOCODER_MODELS.names(can_teach=True)
['waveglow', 'wavenet_teacher']
"""

from __future__ import annotations

from vocoflow.registry import ClassChoices

from .student import IAFStudent, StudentConfig
from .teacher import WaveNetTeacher, WaveNetTeacherConfig
from .waveglow import WaveGlow, WaveGlowConfig

__all__ = ["VOCODER_MODELS", "CAPABILITIES"]

CAPABILITIES = ("parallel_density", "can_teach", "parallel_sampling")

VOCODER_MODELS = ClassChoices("model type", default="waveglow", capabilities=CAPABILITIES)
VOCODER_MODELS.register("waveglow", WaveGlow, WaveGlowConfig, task="vocoder",
                        parallel_density=True, can_teach=True, parallel_sampling=True)
VOCODER_MODELS.register("iaf_student", IAFStudent, StudentConfig, task="distill",
                        parallel_density=False, can_teach=False, parallel_sampling=True)
VOCODER_MODELS.register("wavenet_teacher", WaveNetTeacher, WaveNetTeacherConfig, task="teacher",
                        parallel_density=True, can_teach=True, parallel_sampling=False)
