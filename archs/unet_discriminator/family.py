"""UNetDiscriminatorSN as a family: recognised from its keys; not a generator, so never exported."""

from __future__ import annotations

from ..family import ArchFamily, ArchInfo, StateDict, shape_of
from .module import UNetDiscriminatorSN

NAME = "UNetDiscriminatorSN"


def detect(sd: StateDict) -> ArchInfo | None:
    if not {"conv0.weight", "conv1.weight_orig", "conv9.weight"} <= set(sd):
        return None
    num_feat, in_ch = shape_of(sd, "conv0.weight")[:2]
    notes = ("skip_connection has no weights; assumed True (as released)",)
    return ArchInfo(NAME, {"num_in_ch": in_ch, "num_feat": num_feat, "skip_connection": True}, notes, family=FAMILY)


FAMILY = ArchFamily(
    name=NAME,
    module=UNetDiscriminatorSN,
    detect=detect,
    size_multiple=lambda params: 8,  # three stride-2 convs
)
