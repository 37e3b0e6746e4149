"""RecEraser's, APA's and E2URec's settings for the "small" preset, chosen on the validation split.

Written by ``python -m benchmarks.rec_rivals_selection`` (do not edit by hand): ``settings`` holds
the chosen values, ``selection`` the candidates, what each scored on the validation split and the
rule that chose; both go into every run's record with the config.
"""

RIVALS_SMALL = {
    "settings": {},
    "selection": {},
}
