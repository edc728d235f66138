"""FCOS: the anchor-free one-stage detector whose detections are CenterMask's proposals
(centermask.md §2).

Read top to bottom: the head (towers, outputs, per-level scales), feature locations, training
targets, the three losses, and the post-processing that turns head outputs into detections.
All loss functions are plain functions so they can be checked by hand.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat, get_norm
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils import comm

from .gt import with_gt_fields

__all__ = [
    "FCOS",
    "FCOSHead",
    "Scale",
    "compute_locations",
    "fcos_targets_single_image",
    "centerness_target",
    "giou_loss",
    "fcos_losses",
    "reduce_mean",
]

INF = 100000000.0


def reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over all workers (sum / world size); the identity with one worker."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return tensor
    tensor = tensor.clone()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor / world_size


class Scale(nn.Module):
    """A learnable scalar (state-dict name ``scale``) that multiplies its input."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class FCOSHead(nn.Module):
    """Classification and box towers shared over levels; centerness is predicted from the box tower.

    Returns per level: class logits (N, C, H, W), box distances (N, 4, H, W) in units of the level's
    stride (``ReLU(scale_l · conv)``), centerness logits (N, 1, H, W).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_levels: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.01,
    ):
        super().__init__()
        self.num_classes = num_classes

        def tower(num_convs: int) -> nn.Sequential:
            layers: List[nn.Module] = []
            for _ in range(num_convs):
                layers.append(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=True))
                if norm:
                    layers.append(get_norm(norm, in_channels))
                layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        self.cls_tower = tower(num_cls_convs)
        self.bbox_tower = tower(num_box_convs)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))

        for module in [self.cls_tower, self.bbox_tower, self.cls_logits, self.bbox_pred, self.ctrness]:
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.constant_(layer.bias, 0.0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, features: List[Tensor], box_grad: bool = True
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """``box_grad=False`` runs the box branch (box tower, box and centerness outputs) without
        autograd: for losses whose box terms are weighted 0, it saves their backward pass."""
        logits, bbox_reg, ctrness = [], [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_logits(self.cls_tower(feature)))
            with torch.set_grad_enabled(box_grad and torch.is_grad_enabled()):
                box_feat = self.bbox_tower(feature)
                ctrness.append(self.ctrness(box_feat))
                bbox_reg.append(F.relu(self.scales[level](self.bbox_pred(box_feat))))
        return logits, bbox_reg, ctrness


def compute_locations(height: int, width: int, stride: int, device=None) -> Tensor:
    """Image coordinates (x, y) of the cells of a (height, width) feature map of the given stride:
    x = j·s + ⌊s/2⌋, y = i·s + ⌊s/2⌋, row-major, shape (H·W, 2)."""
    xs = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
    ys = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1) + stride // 2


def fcos_targets_single_image(
    locations: Tensor,
    strides: Tensor,
    size_ranges: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    num_classes: int,
    center_sample: bool = True,
    pos_radius: float = 1.5,
) -> Tuple[Tensor, Tensor]:
    """FCOS targets for one image.

    Args:
        locations: (L, 2) x, y of every location of every level.
        strides: (L,) the stride of each location's level.
        size_ranges: (L, 2) [low, high] of max(l, t, r, b) allowed on each location's level.
        gt_boxes: (M, 4) XYXY; gt_classes: (M,).
    Returns:
        labels (L,) in [0, num_classes] (num_classes = background) and regression targets (L, 4):
        (l, t, r, b) of the assigned box divided by the stride (meaningless for background).
    """
    num_locations = locations.shape[0]
    if gt_boxes.numel() == 0:
        labels = torch.full((num_locations,), num_classes, dtype=torch.int64, device=locations.device)
        return labels, locations.new_zeros((num_locations, 4))

    xs, ys = locations[:, 0:1], locations[:, 1:2]  # (L, 1)
    x0, y0, x1, y1 = (gt_boxes[:, i][None] for i in range(4))  # (1, M)
    reg = torch.stack([xs - x0, ys - y0, x1 - xs, y1 - ys], dim=2)  # (L, M, 4)

    if center_sample:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        radius = strides[:, None].to(reg.dtype) * pos_radius  # (L, 1)
        sx0 = torch.maximum(cx - radius, x0)
        sy0 = torch.maximum(cy - radius, y0)
        sx1 = torch.minimum(cx + radius, x1)
        sy1 = torch.minimum(cy + radius, y1)
        inside = torch.stack([xs - sx0, ys - sy0, sx1 - xs, sy1 - ys], dim=2).min(dim=2).values > 0
    else:
        inside = reg.min(dim=2).values > 0

    max_reg = reg.max(dim=2).values
    in_range = (max_reg >= size_ranges[:, 0:1]) & (max_reg <= size_ranges[:, 1:2])

    areas = ((x1 - x0) * (y1 - y0)).expand(num_locations, -1)
    candidate = inside & in_range
    areas = torch.where(candidate, areas, torch.full_like(areas, INF))
    _, assigned = areas.min(dim=1)  # the smallest box wins
    matched = candidate.any(dim=1)

    reg_targets = reg[torch.arange(num_locations, device=reg.device), assigned]
    reg_targets = reg_targets / strides[:, None].to(reg.dtype)
    labels = gt_classes.to(torch.int64)[assigned]
    labels = torch.where(matched, labels, torch.full_like(labels, num_classes))
    return labels, reg_targets


def centerness_target(reg_targets: Tensor) -> Tensor:
    """sqrt( min(l, r)/max(l, r) · min(t, b)/max(t, b) ) for (K, 4) positive (l, t, r, b)."""
    left_right = reg_targets[:, [0, 2]]
    top_bottom = reg_targets[:, [1, 3]]
    ratio = (left_right.min(dim=1).values / left_right.max(dim=1).values) * (
        top_bottom.min(dim=1).values / top_bottom.max(dim=1).values
    )
    return torch.sqrt(ratio)


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 − GIoU between (l, t, r, b) distance boxes around the same point, per row, with
    IoU = (I + 1) / (U + 1)."""
    pred_l, pred_t, pred_r, pred_b = pred.unbind(dim=1)
    tgt_l, tgt_t, tgt_r, tgt_b = target.unbind(dim=1)
    pred_area = (pred_l + pred_r) * (pred_t + pred_b)
    tgt_area = (tgt_l + tgt_r) * (tgt_t + tgt_b)
    w_inter = torch.min(pred_l, tgt_l) + torch.min(pred_r, tgt_r)
    h_inter = torch.min(pred_t, tgt_t) + torch.min(pred_b, tgt_b)
    w_enclose = torch.max(pred_l, tgt_l) + torch.max(pred_r, tgt_r)
    h_enclose = torch.max(pred_t, tgt_t) + torch.max(pred_b, tgt_b)
    inter = w_inter * h_inter
    union = pred_area + tgt_area - inter
    iou = (inter + 1.0) / (union + 1.0)
    enclose = w_enclose * h_enclose + 1e-7
    giou = iou - (enclose - union) / enclose
    return 1.0 - giou


def fcos_losses(
    logits: Tensor,
    box_reg: Tensor,
    ctr_logits: Tensor,
    labels: Tensor,
    reg_targets: Tensor,
    *,
    num_classes: int,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Dict[str, Tensor]:
    """The three FCOS losses over flattened locations of a (per-worker) batch.

    Args:
        logits (K, C), box_reg (K, 4) stride-normalised distances, ctr_logits (K,),
        labels (K,) with num_classes = background, reg_targets (K, 4) stride-normalised.
    Normalisers (number of positives; centerness-target sum) are averaged over workers, so every
    worker must call this once per iteration, also when it has no positives.
    """
    pos = labels != num_classes
    num_pos_avg = torch.clamp(reduce_mean(pos.sum().to(torch.float32)), min=1.0)

    cls_target = torch.zeros_like(logits)
    pos_inds = pos.nonzero(as_tuple=True)[0]
    cls_target[pos_inds, labels[pos_inds]] = 1.0
    # Not fvcore's scripted twin: TorchScript runs it unfused on its first calls and fused later,
    # which rounds differently, so a process's first step (e.g. after --resume) would differ.
    loss_cls = (
        sigmoid_focal_loss(
            logits, cls_target, alpha=focal_alpha, gamma=focal_gamma, reduction="sum"
        )
        / num_pos_avg
    )

    pos_reg_targets = reg_targets[pos_inds]
    ctr_targets = centerness_target(pos_reg_targets)
    ctr_sum_avg = torch.clamp(reduce_mean(ctr_targets.sum().to(torch.float32)), min=1e-6)
    # Empty positives give a zero loss that still reaches the head (index of an empty set).
    loss_loc = (giou_loss(box_reg[pos_inds], pos_reg_targets) * ctr_targets).sum() / ctr_sum_avg
    loss_ctr = (
        F.binary_cross_entropy_with_logits(ctr_logits[pos_inds], ctr_targets, reduction="sum")
        / num_pos_avg
    )
    return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}


@PROPOSAL_GENERATOR_REGISTRY.register()
class FCOS(nn.Module):
    """FCOS as a detectron2 proposal generator: ``forward(images, features, gt_instances)`` returns
    (detections per image, losses). Detections carry ``pred_boxes``, ``scores`` = sqrt(cls·ctr) and
    ``pred_classes``; they are made with the training or the test post-processing."""

    @configurable
    def __init__(
        self,
        *,
        in_features: Sequence[str],
        strides: Sequence[int],
        head: FCOSHead,
        num_classes: int,
        sizes_of_interest: Sequence[float] = (64, 128, 256, 512),
        center_sample: bool = True,
        pos_radius: float = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        pre_nms_thresh_train: float = 0.05,
        pre_nms_thresh_test: float = 0.05,
        pre_nms_topk_train: int = 1000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_train: int = 100,
        post_nms_topk_test: int = 50,
        nms_thresh: float = 0.6,
    ):
        super().__init__()
        if len(sizes_of_interest) != len(in_features) - 1:
            raise ValueError(
                f"FCOS needs {len(in_features) - 1} sizes of interest for {len(in_features)} "
                f"levels, got {list(sizes_of_interest)}"
            )
        if len(strides) != len(in_features):
            raise ValueError(f"FCOS got {len(strides)} strides for {len(in_features)} levels")
        self.in_features = list(in_features)
        self.strides = [int(s) for s in strides]
        self.fcos_head = head
        self.num_classes = num_classes
        bounds = [-1.0] + [float(s) for s in sizes_of_interest] + [INF]
        self.size_ranges = [(bounds[i], bounds[i + 1]) for i in range(len(self.strides))]
        self.center_sample = center_sample
        self.pos_radius = pos_radius
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.post_process_params = {
            "train": (pre_nms_thresh_train, pre_nms_topk_train, post_nms_topk_train),
            "test": (pre_nms_thresh_test, pre_nms_topk_test, post_nms_topk_test),
        }
        self.nms_thresh = nms_thresh

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        fc = cfg.MODEL.FCOS
        in_features = list(fc.IN_FEATURES)
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"FCOS needs equal channels on {in_features}, got {channels}")
        strides = list(fc.FPN_STRIDES)
        actual = [input_shape[f].stride for f in in_features]
        if strides != actual:
            raise ValueError(f"MODEL.FCOS.FPN_STRIDES {strides} != backbone strides {actual}")
        head = FCOSHead(
            in_channels=channels.pop(),
            num_classes=fc.NUM_CLASSES,
            num_levels=len(in_features),
            num_cls_convs=fc.NUM_CLS_CONVS,
            num_box_convs=fc.NUM_BOX_CONVS,
            norm=fc.NORM,
            prior_prob=fc.PRIOR_PROB,
        )
        return {
            "in_features": in_features,
            "strides": strides,
            "head": head,
            "num_classes": fc.NUM_CLASSES,
            "sizes_of_interest": list(fc.SIZES_OF_INTEREST),
            "center_sample": fc.CENTER_SAMPLE,
            "pos_radius": fc.POS_RADIUS,
            "focal_alpha": fc.LOSS_ALPHA,
            "focal_gamma": fc.LOSS_GAMMA,
            "pre_nms_thresh_train": fc.INFERENCE_TH_TRAIN,
            "pre_nms_thresh_test": fc.INFERENCE_TH_TEST,
            "pre_nms_topk_train": fc.PRE_NMS_TOPK_TRAIN,
            "pre_nms_topk_test": fc.PRE_NMS_TOPK_TEST,
            "post_nms_topk_train": fc.POST_NMS_TOPK_TRAIN,
            "post_nms_topk_test": fc.POST_NMS_TOPK_TEST,
            "nms_thresh": fc.NMS_TH,
        }

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        gt_instances: Optional[List[Instances]] = None,
        box_grad: bool = True,
    ) -> Tuple[List[Instances], Dict[str, Tensor]]:
        """Training: (training-mode detections, losses); ``gt_instances`` required. With
        ``box_grad=False`` ``loss_fcos_loc`` and ``loss_fcos_ctr`` carry no gradient (see FCOSHead).
        Eval: (test-mode detections, {}). Detections are computed without gradient."""
        locations, logits, bbox_reg, ctrness = self._head(features, box_grad)
        losses: Dict[str, Tensor] = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("FCOS in training mode needs gt_instances")
            losses = self.losses(locations, logits, bbox_reg, ctrness, gt_instances)
        mode = "train" if self.training else "test"
        with torch.no_grad():
            detections = self.predict(locations, logits, bbox_reg, ctrness, images.image_sizes, mode)
        return detections, losses

    @torch.no_grad()
    def detect(
        self, images: ImageList, features: Dict[str, Tensor], postprocess: str = "test"
    ) -> List[Instances]:
        """Detections only (no losses, no gradient), with the "train" or "test" post-processing
        regardless of the module's mode."""
        locations, logits, bbox_reg, ctrness = self._head(features)
        return self.predict(locations, logits, bbox_reg, ctrness, images.image_sizes, postprocess)

    def _head(self, features: Dict[str, Tensor], box_grad: bool = True):
        feats = [features[f] for f in self.in_features]
        locations = [
            compute_locations(f.shape[2], f.shape[3], s, f.device) for f, s in zip(feats, self.strides)
        ]
        return (locations, *self.fcos_head(feats, box_grad))

    # ---- training ----
    def compute_targets(
        self, locations: List[Tensor], gt_instances: List[Instances]
    ) -> Tuple[Tensor, Tensor]:
        """Labels (N, L) and stride-normalised regression targets (N, L, 4) over all levels."""
        all_locations = cat(locations, dim=0)
        device = all_locations.device
        strides = cat(
            [torch.full((len(loc),), s, device=device) for loc, s in zip(locations, self.strides)]
        )
        size_ranges = cat(
            [
                torch.tensor(r, device=device, dtype=torch.float32).expand(len(loc), 2)
                for loc, r in zip(locations, self.size_ranges)
            ]
        )
        labels, reg_targets = [], []
        for inst in gt_instances:
            inst = with_gt_fields(inst, device)
            lab, reg = fcos_targets_single_image(
                all_locations,
                strides,
                size_ranges,
                inst.gt_boxes.tensor,
                inst.gt_classes,
                self.num_classes,
                center_sample=self.center_sample,
                pos_radius=self.pos_radius,
            )
            labels.append(lab)
            reg_targets.append(reg)
        return torch.stack(labels), torch.stack(reg_targets)

    def losses(self, locations, logits, bbox_reg, ctrness, gt_instances) -> Dict[str, Tensor]:
        labels, reg_targets = self.compute_targets(locations, gt_instances)
        n, c = logits[0].shape[:2]
        flat_logits = cat([x.permute(0, 2, 3, 1).reshape(n, -1, c) for x in logits], dim=1)
        flat_reg = cat([x.permute(0, 2, 3, 1).reshape(n, -1, 4) for x in bbox_reg], dim=1)
        flat_ctr = cat([x.reshape(n, -1) for x in ctrness], dim=1)
        return fcos_losses(
            flat_logits.reshape(-1, c),
            flat_reg.reshape(-1, 4),
            flat_ctr.reshape(-1),
            labels.reshape(-1),
            reg_targets.reshape(-1, 4),
            num_classes=self.num_classes,
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
        )

    # ---- inference ----
    def predict(
        self,
        locations: List[Tensor],
        logits: List[Tensor],
        bbox_reg: List[Tensor],
        ctrness: List[Tensor],
        image_sizes: List[Tuple[int, int]],
        mode: str = "test",
    ) -> List[Instances]:
        """Per image: per level keep (location, class) pairs with cls > threshold, the top-k of
        them by cls·ctr; score = sqrt(cls·ctr); decode; class-aware NMS; keep the top-k."""
        if mode not in self.post_process_params:
            raise ValueError(f"postprocess must be 'train' or 'test', got {mode!r}")
        thresh, pre_topk, post_topk = self.post_process_params[mode]
        results = []
        for img, image_size in enumerate(image_sizes):
            boxes_all, scores_all, classes_all = [], [], []
            for loc, cls_l, reg_l, ctr_l, stride in zip(
                locations, logits, bbox_reg, ctrness, self.strides
            ):
                cls_prob = cls_l[img].permute(1, 2, 0).reshape(-1, cls_l.shape[1]).sigmoid()
                ctr_prob = ctr_l[img].reshape(-1).sigmoid()
                loc_idx, cls_idx = (cls_prob > thresh).nonzero(as_tuple=True)
                prod = cls_prob[loc_idx, cls_idx] * ctr_prob[loc_idx]
                if prod.numel() > pre_topk:
                    prod, top = prod.topk(pre_topk)
                    loc_idx, cls_idx = loc_idx[top], cls_idx[top]
                dist = reg_l[img].permute(1, 2, 0).reshape(-1, 4)[loc_idx] * stride
                xy = loc[loc_idx]
                boxes_all.append(torch.cat([xy - dist[:, :2], xy + dist[:, 2:]], dim=1))
                scores_all.append(torch.sqrt(prod))
                classes_all.append(cls_idx)
            # No clipping to the image before NMS and top-k (centermask.md §2): the reference
            # clips only when final outputs are rescaled, and pseudo-labels keep the raw boxes.
            boxes = Boxes(cat(boxes_all))
            scores = cat(scores_all)
            classes = cat(classes_all)
            keep = batched_nms(boxes.tensor, scores, classes, self.nms_thresh)[:post_topk]
            inst = Instances(image_size)
            inst.pred_boxes = boxes[keep]
            inst.scores = scores[keep]
            inst.pred_classes = classes[keep]
            results.append(inst)
        return results
