"""RecordsInit: what a class records, whichever constructor builds it."""

from __future__ import annotations

import torch
from torch import nn

from invreg.config import RecordsInit, from_config, to_config
from invreg.models import MLP


class TheirNet(nn.Module):
    """A backbone that knows nothing of invreg."""

    def __init__(self, num_classes: int = 10, channels: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(1, channels, 3)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


class Mine(RecordsInit, TheirNet):
    pass


class MineToo(Mine):
    pass


class MyMLP(MLP):
    pass


def test_a_class_without_init_records_the_inherited_constructor():
    net = Mine(num_classes=3)
    assert net.init_args == {"num_classes": 3, "channels": 4}
    assert to_config(net) == {"class_path": f"{__name__}.Mine",
                              "init_args": {"num_classes": 3, "channels": 4}}


def test_its_subclasses_and_those_of_invreg_models_record_too():
    assert MineToo(5, channels=2).init_args == {"num_classes": 5, "channels": 2}
    assert to_config(MineToo(5))["class_path"].endswith(".MineToo")
    recorded = MyMLP([1, 4, 4], 3, hidden_widths=[8]).init_args
    assert recorded["num_classes"] == 3 and recorded["hidden_widths"] == [8]


def test_the_description_rebuilds_an_equal_model():
    net = Mine(num_classes=3, channels=2)
    rebuilt = from_config(to_config(net), nn.Module, "backbone")
    assert type(rebuilt) is Mine and rebuilt.init_args == net.init_args
    assert rebuilt.conv.out_channels == 2 and rebuilt.head.out_features == 3
