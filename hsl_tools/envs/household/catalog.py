"""What a household can hold: room types, receptacle types, object types and their affordances.

Names and affordances follow ALFWorld's (a mug is cleanable, heatable and coolable; a fridge
cools and opens), so prompts, the rule relabeler and a trained model carry over to the real
games. Each object lists where it spawns, most likely first: the world draws placements from
it, and the expert searches in that order, as a person would.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsl_tools.envs.alfworld_family.goals import GoalType

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
# Receptacles that only take what an object lists for it; any object fits the rest.
SPECIAL = frozenset({"fridge", "microwave", "sinkbasin", "stoveburner", "coffeemachine",
                     "toaster", "toilet", "towelholder", "handtowelholder", "toiletpaperhanger",
                     "bathtubbasin", "bed", "sofa", "armchair", "safe", "laundryhamper"})
LAMP_HOSTS = ("desk", "sidetable", "dresser")
# Transformation verb -> (appliance type that does it, the World state set it adds to).
TRANSFORMS = {"clean": ("sinkbasin", "clean"), "heat": ("microwave", "hot"),
              "cool": ("fridge", "cool")}
GOAL_VERB = {GoalType.CLEAN: "clean", GoalType.HEAT: "heat", GoalType.COOL: "cool"}

# Room type -> receptacle type -> (min, max) instances. Insertion order is display order.
ROOMS: dict[str, dict[str, tuple[int, int]]] = {
    "kitchen": {"cabinet": (2, 5), "drawer": (1, 3), "countertop": (1, 2), "fridge": (1, 1),
                "microwave": (1, 1), "sinkbasin": (1, 1), "stoveburner": (1, 2),
                "coffeemachine": (0, 1), "diningtable": (0, 1), "garbagecan": (1, 1),
                "shelf": (0, 2), "toaster": (0, 1)},
    "bathroom": {"cabinet": (1, 4), "countertop": (1, 1), "sinkbasin": (1, 2), "toilet": (1, 1),
                 "towelholder": (0, 1), "handtowelholder": (0, 1), "toiletpaperhanger": (1, 1),
                 "bathtubbasin": (0, 1), "garbagecan": (1, 1), "drawer": (0, 2)},
    "bedroom": {"bed": (1, 1), "desk": (0, 1), "drawer": (1, 4), "dresser": (0, 1),
                "shelf": (1, 3), "sidetable": (1, 2), "garbagecan": (1, 1), "safe": (0, 1),
                "laundryhamper": (0, 1)},
    "livingroom": {"sofa": (1, 1), "armchair": (0, 2), "coffeetable": (1, 1),
                   "sidetable": (1, 2), "drawer": (1, 3), "cabinet": (0, 2), "shelf": (0, 2),
                   "tvstand": (0, 1), "dresser": (0, 1), "garbagecan": (1, 1),
                   "diningtable": (0, 1)},
}

# Goal types each room can pose: transformations need their appliance, light needs a lamp.
ROOM_GOALS: dict[str, tuple[GoalType, ...]] = {
    "kitchen": (GoalType.PICK_AND_PLACE, GoalType.CLEAN, GoalType.HEAT, GoalType.COOL,
                GoalType.PICK_TWO),
    "bathroom": (GoalType.PICK_AND_PLACE, GoalType.CLEAN, GoalType.PICK_TWO),
    "bedroom": (GoalType.PICK_AND_PLACE, GoalType.LOOK_IN_LIGHT, GoalType.PICK_TWO),
    "livingroom": (GoalType.PICK_AND_PLACE, GoalType.LOOK_IN_LIGHT, GoalType.PICK_TWO),
}


@dataclass(frozen=True)
class ObjectKind:
    """An object type: where it spawns (likeliest first), extra places it fits, affordances."""

    spawn: tuple[str, ...]
    extra: tuple[str, ...] = ()
    clean: bool = False
    heat: bool = False
    cool: bool = False

    def fits(self, recep_type: str) -> bool:
        """Whether `move` may put this object into a receptacle of this type."""
        return recep_type not in SPECIAL or recep_type in self.spawn or recep_type in self.extra


def _k(spawn: str, extra: str = "", flags: str = "") -> ObjectKind:
    return ObjectKind(tuple(spawn.split()), tuple(extra.split()),
                      clean="c" in flags, heat="h" in flags, cool="f" in flags)


_CUTLERY = _k("drawer countertop diningtable sinkbasin", "", "c")
OBJECTS: dict[str, dict[str, ObjectKind]] = {
    "kitchen": {
        "apple": _k("countertop diningtable fridge garbagecan", "microwave sinkbasin", "chf"),
        "bread": _k("countertop diningtable fridge", "microwave", "hf"),
        "egg": _k("fridge countertop diningtable garbagecan sinkbasin", "microwave", "chf"),
        "potato": _k("fridge countertop diningtable sinkbasin", "microwave stoveburner", "chf"),
        "tomato": _k("countertop fridge diningtable sinkbasin", "microwave", "chf"),
        "lettuce": _k("fridge countertop diningtable", "sinkbasin", "cf"),
        "mug": _k("coffeemachine cabinet countertop sinkbasin shelf", "microwave fridge", "chf"),
        "cup": _k("cabinet countertop diningtable shelf fridge", "microwave sinkbasin", "chf"),
        "bowl": _k("cabinet countertop fridge shelf diningtable", "microwave sinkbasin", "cf"),
        "plate": _k("cabinet countertop diningtable fridge", "microwave sinkbasin", "chf"),
        "pan": _k("stoveburner countertop cabinet", "sinkbasin fridge", "cf"),
        "pot": _k("stoveburner cabinet countertop", "sinkbasin fridge", "cf"),
        "fork": _CUTLERY, "spoon": _CUTLERY, "knife": _CUTLERY, "spatula": _CUTLERY,
        "ladle": _CUTLERY, "butterknife": _CUTLERY,
        "saltshaker": _k("countertop shelf cabinet diningtable drawer"),
        "peppershaker": _k("countertop shelf cabinet diningtable drawer"),
        "dishsponge": _k("sinkbasin countertop cabinet drawer", "", "c"),
        "winebottle": _k("fridge countertop shelf cabinet diningtable", "", "f"),
    },
    "bathroom": {
        "soapbar": _k("sinkbasin countertop toilet bathtubbasin cabinet", "", "c"),
        "cloth": _k("countertop cabinet bathtubbasin sinkbasin drawer", "", "c"),
        "soapbottle": _k("countertop toilet cabinet", "sinkbasin"),
        "toiletpaper": _k("toiletpaperhanger toilet countertop cabinet drawer"),
        "spraybottle": _k("toilet countertop cabinet"),
        "candle": _k("countertop toilet cabinet"),
        "handtowel": _k("handtowelholder countertop cabinet", "towelholder"),
        "towel": _k("towelholder countertop bathtubbasin", "handtowelholder"),
        "tissuebox": _k("toilet countertop cabinet"),
        "dishsponge": _k("sinkbasin countertop bathtubbasin cabinet", "", "c"),
    },
    "bedroom": {
        "book": _k("bed desk shelf sidetable dresser drawer"),
        "cd": _k("desk drawer shelf sidetable safe dresser"),
        "cellphone": _k("bed desk sidetable dresser drawer"),
        "creditcard": _k("desk drawer sidetable dresser shelf", "safe"),
        "keychain": _k("desk drawer sidetable dresser safe shelf"),
        "pen": _k("desk drawer shelf sidetable"),
        "pencil": _k("desk drawer shelf sidetable"),
        "alarmclock": _k("desk sidetable dresser shelf"),
        "pillow": _k("bed", "laundryhamper"),
        "laptop": _k("bed desk sidetable"),
        "mug": _k("desk shelf sidetable"),
        "bowl": _k("desk shelf sidetable dresser"),
    },
    "livingroom": {
        "remotecontrol": _k("sofa coffeetable sidetable tvstand armchair drawer dresser"),
        "keychain": _k("coffeetable sidetable drawer dresser shelf"),
        "newspaper": _k("sofa coffeetable sidetable armchair diningtable"),
        "pillow": _k("sofa armchair"),
        "creditcard": _k("coffeetable sidetable drawer shelf"),
        "laptop": _k("sofa coffeetable diningtable", "armchair"),
        "statue": _k("coffeetable shelf sidetable dresser tvstand"),
        "vase": _k("shelf sidetable coffeetable diningtable"),
        "watch": _k("coffeetable sidetable drawer dresser shelf"),
        "box": _k("coffeetable sidetable shelf diningtable", "sofa armchair"),
        "book": _k("sofa coffeetable shelf sidetable"),
        "tissuebox": _k("coffeetable sidetable shelf"),
    },
}

DESKLAMP = "desklamp"
