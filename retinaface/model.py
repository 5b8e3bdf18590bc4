"""RetinaFace with the MobileNet-0.25 backbone, built exactly as biubug6/Pytorch_Retinaface builds it.

State-dict names match biubug6 checkpoints (`body.stage1.0.0.weight`, `ssh1.conv7x7_3.0.weight`, ...).
Only this module, weights.py and export.py import torch; the runner imports it lazily (torch backend).
Python 3.7+ and torch 1.7 compatible: it also runs on the Pi.
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ModelError


def conv_bn(inp, oup, stride=1, leaky=0.0):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(inp, oup, stride):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp, oup, stride, leaky=0.0):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, padding=0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp, oup, stride, leaky=0.1):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class SSH(nn.Module):
    def __init__(self, in_channel, out_channel):
        super().__init__()
        assert out_channel % 4 == 0
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2, stride=1)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, stride=1, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, stride=1, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)

    def forward(self, x):
        conv3x3 = self.conv3X3(x)
        conv5x5_1 = self.conv5X5_1(x)
        conv5x5 = self.conv5X5_2(conv5x5_1)
        conv7x7 = self.conv7x7_3(self.conv7X7_2(conv5x5_1))
        return F.relu(torch.cat([conv3x3, conv5x5, conv7x7], dim=1))


class FPN(nn.Module):
    def __init__(self, in_channels_list, out_channels):
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn1x1(in_channels_list[0], out_channels, stride=1, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels_list[1], out_channels, stride=1, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels_list[2], out_channels, stride=1, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, inputs):
        output1 = self.output1(inputs[0])
        output2 = self.output2(inputs[1])
        output3 = self.output3(inputs[2])
        # Upsample to the tensor's own shape, so odd feature sizes work (and export dynamically).
        up3 = F.interpolate(output3, size=[output2.size(2), output2.size(3)], mode="nearest")
        output2 = self.merge2(output2 + up3)
        up2 = F.interpolate(output2, size=[output1.size(2), output1.size(3)], mode="nearest")
        output1 = self.merge1(output1 + up2)
        return [output1, output2, output3]


class MobileNetV1Body(nn.Module):
    """MobileNet-0.25 stages 1-3: what IntermediateLayerGetter keeps of biubug6's MobileNetV1."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_dw(64, 128, 2),
            conv_dw(128, 128, 1),
            conv_dw(128, 128, 1),
            conv_dw(128, 128, 1),
            conv_dw(128, 128, 1),
            conv_dw(128, 128, 1),
        )
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x):
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class Head(nn.Module):
    """One 1x1 conv per level; output flattened to (B, H*W*anchors, k)."""

    def __init__(self, in_channels, anchor_num, k):
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(in_channels, anchor_num * k, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.k)


class RetinaFace(nn.Module):
    """RetinaFace-mnet0.25 in test phase: (boxes, softmaxed scores, landmarks)."""

    def __init__(self, in_channel=32, out_channel=64, anchor_num=2):
        super().__init__()
        self.body = MobileNetV1Body()
        self.fpn = FPN([in_channel * 2, in_channel * 4, in_channel * 8], out_channel)
        self.ssh1 = SSH(out_channel, out_channel)
        self.ssh2 = SSH(out_channel, out_channel)
        self.ssh3 = SSH(out_channel, out_channel)
        self.ClassHead = nn.ModuleList([Head(out_channel, anchor_num, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([Head(out_channel, anchor_num, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([Head(out_channel, anchor_num, 10) for _ in range(3)])

    def forward(self, inputs):
        fpn = self.fpn(self.body(inputs))
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        bbox = torch.cat([self.BboxHead[i](f) for i, f in enumerate(features)], dim=1)
        cls = torch.cat([self.ClassHead[i](f) for i, f in enumerate(features)], dim=1)
        landm = torch.cat([self.LandmarkHead[i](f) for i, f in enumerate(features)], dim=1)
        return bbox, F.softmax(cls, dim=-1), landm


def clean_state_dict(checkpoint):
    """Unwrap a `state_dict` key and strip DataParallel's `module.` prefix, as biubug6 does."""
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise TypeError("checkpoint is not a state dict")
    return OrderedDict(
        (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in checkpoint.items()
    )


def _torch_load(path):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(str(path), map_location="cpu")


def load_model(path):
    """Load a biubug6-format checkpoint strictly into an eval-mode RetinaFace.

    Unlike biubug6 (strict=False), a mismatching checkpoint stops here and names the keys.
    """
    try:
        checkpoint = _torch_load(path)
        state = clean_state_dict(checkpoint)
    except FileNotFoundError:
        raise ModelError("weights file not found: {}".format(path)) from None
    except Exception as error:  # unpickling raises many types for a corrupt file
        raise ModelError(
            "cannot read weights {}: not a PyTorch checkpoint ({})".format(
                path, str(error).splitlines()[0][:120]
            )
        ) from None
    model = RetinaFace()
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelError(
            "weights {} do not fit RetinaFace-mnet0.25: {} missing (e.g. {}), {} unexpected (e.g. {})".format(
                path,
                len(missing),
                ", ".join(missing[:3]) or "-",
                len(unexpected),
                ", ".join(unexpected[:3]) or "-",
            )
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(
            "weights {} do not fit RetinaFace-mnet0.25: {}".format(
                path, str(error).splitlines()[1][:200] if "\n" in str(error) else error
            )
        ) from None
    return model.eval()
