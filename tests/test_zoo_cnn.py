"""The zoo's CNNs: exact torchvision parameter counts, forward FLOPs, and the too-small-image error.

Every number here is torchvision's documented weight metadata (num_params and the 'GFLOPS' column,
which is GMACs at the eval crop size), copied from ../shared/reference/reference_counts.yaml under
`torchvision_documented`; none comes from the estimator.
"""
from __future__ import annotations

import pytest

import estimator
import roofline_zoo
from estimator.errors import CaptureError

# (zoo name, torchvision weights the numbers belong to, exact num_params, GMACs at the default image)
TORCHVISION = [
    ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 11_689_512, 1.814),
    ("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 21_797_672, 3.664),
    ("resnet101", "ResNet101_Weights.IMAGENET1K_V1", 44_549_160, 7.801),
    ("resnet152", "ResNet152_Weights.IMAGENET1K_V1", 60_192_808, 11.514),
    ("vgg16", "VGG16_Weights.IMAGENET1K_V1", 138_357_544, 15.47),
    ("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", 3_504_872, 0.301),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1", 5_483_032, 0.217),
    ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 5_288_548, 0.386),  # 224 px
    ("efficientnet_b1", "EfficientNet_B1_Weights.IMAGENET1K_V1", 7_794_184, 0.687),  # 240 px
    ("efficientnet_b2", "EfficientNet_B2_Weights.IMAGENET1K_V1", 9_109_994, 1.088),  # 288 px
    ("efficientnet_b3", "EfficientNet_B3_Weights.IMAGENET1K_V1", 12_233_232, 1.827),  # 300 px
    ("efficientnet_b4", "EfficientNet_B4_Weights.IMAGENET1K_V1", 19_341_616, 4.394),  # 380 px
    ("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 28_589_128, 4.456),
    ("densenet121", "DenseNet121_Weights.IMAGENET1K_V1", 7_978_856, 2.834),
]
IDS = [f"{name}-torchvision.{weights}" for name, weights, _, _ in TORCHVISION]


@pytest.mark.parametrize("name, weights, params, gmacs", TORCHVISION, ids=IDS)
def test_parameter_count_equals_torchvision(name, weights, params, gmacs):
    model, _ = roofline_zoo.get(name).build()
    assert sum(p.numel() for p in model.parameters()) == params, f"torchvision {weights} num_params"


@pytest.mark.parametrize("name, weights, params, gmacs", TORCHVISION, ids=IDS)
def test_forward_conv_and_matmul_flops_within_2_percent_of_torchvision(name, weights, params, gmacs):
    model, inputs = roofline_zoo.get(name).build(batch=1)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="inference")
    assert report.unsupported() == []
    # torchvision counts conv + linear multiply-accumulates; 1 MAC = 2 FLOPs
    conv_matmul = sum(c.flops for c in report.costs if c.op_class in ("matmul", "conv", "attention"))
    assert conv_matmul == pytest.approx(2 * gmacs * 1e9, rel=0.02), f"torchvision {weights} GFLOPS (GMACs)"


@pytest.mark.parametrize("name", [name for name, *_ in TORCHVISION] + ["resnet50"])
def test_too_small_image_names_its_size_and_the_minimum(name):
    model, inputs = roofline_zoo.get(name).build(image=16)
    message = f"image 16x16 is too small for {name}: it needs at least 32x32"
    with pytest.raises(ValueError, match=message):
        model(*inputs)
    if name == "resnet50":  # the estimator passes the model's own explanation on
        with pytest.raises(CaptureError, match=message):
            estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="inference")
