"""The Gauss–Newton erases' settings of the arms' "small" presets, chosen on the validation split.

Written by ``python -m benchmarks.erase_selection`` (do not edit by hand): per arm, ``settings``
holds the chosen values and ``selection`` the candidates, what each scored on the validation
split against K retrains, and the rule that chose; both go into every run's record with the config.
"""


def chosen(arm: str) -> tuple[dict, dict]:
    """(the arm's chosen MethodSettings fields, their selection evidence); empty where none was chosen."""
    entry = ERASE_SMALL.get(arm)
    return (dict(entry["settings"]), {"gauss_newton": entry["selection"]}) if entry else ({}, {})


ERASE_SMALL = {}
