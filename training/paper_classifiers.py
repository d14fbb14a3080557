"""The eight CIFAR-10 classifiers of MMSys'22 / PMC², built from torchvision's model classes.

Each matches PyTorch_CIFAR10's ``cifar10_models`` (the module MMSys'22's code imports): a 3x3 stride-1
first convolution for 32x32 inputs; ResNet and DenseNet keep their stem max-pool, GoogLeNet and
Inception-v3 drop their early down-sampling. Parameter counts and forward FLOPs equal the reference's
(tests/test_models.py) and the module names follow torchvision's, so its weights load as they are.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models
from torchvision.models.googlenet import BasicConv2d as GoogLeNetConv
from torchvision.models.inception import BasicConv2d as InceptionConv
from torchvision.models.vgg import cfgs, make_layers

NUM_CLASSES = 10


def _vgg(config: str) -> nn.Module:
    model = models.VGG(make_layers(cfgs[config], batch_norm=True), num_classes=NUM_CLASSES, init_weights=True)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier[0] = nn.Linear(512, 4096)
    return model


def vgg13_bn() -> nn.Module:
    return _vgg("B")


def vgg16_bn() -> nn.Module:
    return _vgg("D")


def _resnet(layers: list[int]) -> nn.Module:
    model = models.ResNet(models.resnet.BasicBlock, layers, num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def resnet18() -> nn.Module:
    return _resnet([2, 2, 2, 2])


def resnet34() -> nn.Module:
    return _resnet([3, 4, 6, 3])


def densenet121() -> nn.Module:
    model = models.DenseNet(32, (6, 12, 24, 16), 64, num_classes=NUM_CLASSES)
    model.features.conv0 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def mobilenet_v2() -> nn.Module:
    settings = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    model = models.MobileNetV2(num_classes=NUM_CLASSES, inverted_residual_setting=settings)
    model.features[0][0].stride = (1, 1)
    return model


def googlenet() -> nn.Module:
    model = models.GoogLeNet(num_classes=NUM_CLASSES, aux_logits=False, transform_input=False, init_weights=False)
    model.conv1 = GoogLeNetConv(3, 192, kernel_size=3, padding=1)
    for name in ("maxpool1", "conv2", "conv3", "maxpool2"):
        setattr(model, name, nn.Identity())
    model.maxpool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    model.maxpool4 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return model


def inception_v3() -> nn.Module:
    model = models.Inception3(num_classes=NUM_CLASSES, aux_logits=False, transform_input=False, init_weights=False)
    model.Conv2d_1a_3x3 = InceptionConv(3, 192, kernel_size=3, padding=1)
    for name in ("Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"):
        setattr(model, name, nn.Identity())
    return model


PAPER_CLASSIFIERS: dict[str, Callable[[], nn.Module]] = {
    "vgg13_bn": vgg13_bn,
    "vgg16_bn": vgg16_bn,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "densenet121": densenet121,
    "mobilenet_v2": mobilenet_v2,
    "googlenet": googlenet,
    "inception_v3": inception_v3,
}
