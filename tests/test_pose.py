"""hrformer.pose against a numpy restatement of mmpose 1.x's top-down pipeline (written here, loops
over keypoints and all) and against OpenCV's warpAffine / GaussianBlur where cv2 is installed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import hrformer
from hrformer import pose
from hrformer.keypoints import COCO_KEYPOINTS, KeypointInfo

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- numpy restatement of mmpose


def np_bbox_xyxy2cs_fixed(bbox: np.ndarray, aspect_ratio: float, padding: float = 1.25):
    """bbox_xyxy2cs (GetBBoxCenterScale) then TopdownAffine._fix_aspect_ratio."""
    center = (bbox[:, 2:] + bbox[:, :2]) * 0.5
    scale = (bbox[:, 2:] - bbox[:, :2]) * padding
    out = scale.copy()
    for i, (w, h) in enumerate(scale):
        out[i] = (w, w / aspect_ratio) if w > h * aspect_ratio else (h * aspect_ratio, h)
    return center, out


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix taking 3 src points to 3 dst points (what cv2.getAffineTransform solves)."""
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def np_get_warp_matrix(center, scale, rot, output_size_wh, inv=False) -> np.ndarray:
    """mmpose get_warp_matrix (shift 0, fix_aspect_ratio=True), output size in (w, h)."""
    dst_w, dst_h = output_size_wh
    r = math.radians(rot)
    sn, cs = math.sin(r), math.cos(r)
    src_dir = np.array([[cs, -sn], [sn, cs]]) @ np.array([scale[0] * -0.5, 0.0])
    dst_dir = np.array([dst_w * -0.5, 0.0])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = center
    src[1] = center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = third(src[0], src[1])
    dst[2] = third(dst[0], dst[1])
    return _affine_from_points(dst, src) if inv else _affine_from_points(src, dst)


def np_get_udp_warp_matrix(center, scale, rot, output_size_wh) -> np.ndarray:
    input_size = center * 2
    r = math.radians(rot)
    sx = (output_size_wh[0] - 1) / scale[0]
    sy = (output_size_wh[1] - 1) / scale[1]
    m = np.zeros((2, 3))
    m[0, 0] = math.cos(r) * sx
    m[0, 1] = -math.sin(r) * sx
    m[0, 2] = sx * (-0.5 * input_size[0] * math.cos(r) + 0.5 * input_size[1] * math.sin(r) + 0.5 * scale[0])
    m[1, 0] = math.sin(r) * sy
    m[1, 1] = math.cos(r) * sy
    m[1, 2] = sy * (-0.5 * input_size[0] * math.sin(r) - 0.5 * input_size[1] * math.cos(r) + 0.5 * scale[1])
    return m


def np_flip_heatmaps(heatmaps: np.ndarray, flip_indices, shift: bool) -> np.ndarray:
    out = heatmaps[:, :, :, ::-1][:, flip_indices].copy()
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def np_heatmap_maximum(heatmaps: np.ndarray):
    """get_heatmap_maximum for (K, H, W)."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    y, x = np.unravel_index(np.argmax(flat, axis=1), shape=(h, w))
    locs = np.stack((x, y), axis=-1).astype(np.float32)
    vals = np.amax(flat, axis=1)
    locs[vals <= 0.0] = -1
    return locs, vals


def np_opencv_gaussian_kernel(ksize: int) -> np.ndarray:
    table = {3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    if ksize in table:
        return np.array(table[ksize])
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def np_cv_gaussian_blur(img: np.ndarray, ksize: int) -> np.ndarray:
    """cv2.GaussianBlur(img, (ksize, ksize), 0): separable, BORDER_REFLECT_101 (numpy 'reflect')."""
    kernel = np_opencv_gaussian_kernel(ksize).astype(np.float32)
    r = ksize // 2
    padded = np.pad(img, r, mode="reflect")
    rows = sum(kernel[i] * padded[:, i:i + img.shape[1]] for i in range(ksize))
    return sum(kernel[i] * rows[i:i + img.shape[0]] for i in range(ksize)).astype(np.float32)


def np_gaussian_blur(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose gaussian_blur (K, H, W), in place as mmpose's."""
    border = (kernel - 1) // 2
    k, h, w = heatmaps.shape
    for i in range(k):
        origin_max = np.max(heatmaps[i])
        dr = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
        dr[border:-border, border:-border] = heatmaps[i].copy()
        dr = np_cv_gaussian_blur(dr, kernel)
        heatmaps[i] = dr[border:-border, border:-border].copy()
        heatmaps[i] *= origin_max / np.max(heatmaps[i])
    return heatmaps


def np_refine_msra(keypoints: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    n_, k_ = keypoints.shape[:2]
    h, w = heatmaps.shape[1:]
    for n in range(n_):
        for k in range(k_):
            x, y = keypoints[n, k, :2].astype(int)
            dx = heatmaps[k, y, x + 1] - heatmaps[k, y, x - 1] if (1 < x < w - 1 and 0 < y < h) else 0.0
            dy = heatmaps[k, y + 1, x] - heatmaps[k, y - 1, x] if (1 < y < h - 1 and 0 < x < w) else 0.0
            keypoints[n, k] += np.sign([dx, dy], dtype=np.float32) * 0.25
    return keypoints


def np_refine_dark(keypoints: np.ndarray, heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    n_, k_ = keypoints.shape[:2]
    h, w = heatmaps.shape[1:]
    heatmaps = np_gaussian_blur(heatmaps, kernel)
    np.maximum(heatmaps, 1e-10, out=heatmaps)
    np.log(heatmaps, heatmaps)
    for n in range(n_):
        for k in range(k_):
            x, y = keypoints[n, k, :2].astype(int)
            if 1 < x < w - 2 and 1 < y < h - 2:
                hm = heatmaps[k]
                dx = 0.5 * (hm[y, x + 1] - hm[y, x - 1])
                dy = 0.5 * (hm[y + 1, x] - hm[y - 1, x])
                dxx = 0.25 * (hm[y, x + 2] - 2 * hm[y, x] + hm[y, x - 2])
                dxy = 0.25 * (hm[y + 1, x + 1] - hm[y - 1, x + 1] - hm[y + 1, x - 1] + hm[y - 1, x - 1])
                dyy = 0.25 * (hm[y + 2, x] - 2 * hm[y, x] + hm[y - 2, x])
                if dxx * dyy - dxy ** 2 != 0:
                    hessian = np.array([[dxx, dxy], [dxy, dyy]])
                    keypoints[n, k, :2] += -(np.linalg.inv(hessian) @ np.array([dx, dy]))
    return keypoints


def np_refine_dark_udp(keypoints: np.ndarray, heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    n_, k_ = keypoints.shape[:2]
    h, w = heatmaps.shape[1:]
    heatmaps = np_gaussian_blur(heatmaps, kernel)
    np.clip(heatmaps, 1e-3, 50.0, heatmaps)
    np.log(heatmaps, heatmaps)
    pad = np.pad(heatmaps, ((0, 0), (1, 1), (1, 1)), mode="edge").flatten()
    for n in range(n_):
        for k in range(k_):
            x, y = keypoints[n, k]
            # flat index into the padded maps; negative indices wrap round as in mmpose (numpy)
            i = int(x + 1 + (y + 1) * (w + 2)) + (w + 2) * (h + 2) * k

            def v(off):
                return pad[i + off] if i + off >= 0 else pad[len(pad) + i + off]

            i_, ix1, ix1_ = v(0), v(1), v(-1)
            iy1, iy1_ = v(w + 2), v(-2 - w)
            ix1y1, ix1_y1_ = v(w + 3), v(-w - 3)
            dx = 0.5 * (ix1 - ix1_)
            dy = 0.5 * (iy1 - iy1_)
            dxx = ix1 - 2 * i_ + ix1_
            dyy = iy1 - 2 * i_ + iy1_
            dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
            hessian = np.array([[dxx, dxy], [dxy, dyy]], dtype=np.float64) + np.finfo(np.float32).eps * np.eye(2)
            keypoints[n, k] -= np.linalg.inv(hessian) @ np.array([dx, dy], dtype=np.float64)
    return keypoints


def np_decode(heatmaps: np.ndarray, input_size_wh, method: str, kernel: int = 11):
    """MSRAHeatmap.decode (msra / dark) or UDPHeatmap.decode (udp) of one instance (K, H, W)."""
    heatmaps = heatmaps.copy()
    k, h, w = heatmaps.shape
    keypoints, scores = np_heatmap_maximum(heatmaps)
    keypoints, scores = keypoints[None], scores[None]
    if method == "udp":
        keypoints = np_refine_dark_udp(keypoints, heatmaps, kernel)
        return keypoints / [w - 1, h - 1] * np.array(input_size_wh), scores
    if method == "dark":
        keypoints = np_refine_dark(keypoints, heatmaps, kernel)
    else:
        keypoints = np_refine_msra(keypoints, heatmaps)
    return keypoints * (np.array(input_size_wh) / [w, h]).astype(np.float32), scores


# --------------------------------------------------------------------------- fixtures and helpers


def gaussian_maps(h: int, w: int, centres, sigma: float = 2.0, peak: float = 1.0) -> np.ndarray:
    """(K, h, w) unnormalised Gaussians at (x, y) centres."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)) for x, y in centres])


@pytest.fixture(scope="module")
def edge_heatmaps() -> np.ndarray:
    """(2, 12, 16, 12) heatmaps whose maxima sit everywhere the refinements' conditions switch:
    corners, each border, one and two pixels in, the interior, ties, flat zero and negative maps."""
    h, w = 16, 12
    rng = np.random.default_rng(0)
    centres = [(0, 0), (w - 1, h - 1), (1, 7), (w - 2, 5), (6, 1), (4, h - 2), (2, 2), (w - 3, h - 3),
               (5.3, 8.6), (7.7, 3.2)]
    maps = gaussian_maps(h, w, centres, sigma=2.0) + 0.01 * rng.random((len(centres), h, w))
    tie = np.full((1, h, w), 0.5)  # argmax: the first pixel
    zero = np.zeros((1, h, w))
    first = np.concatenate([maps, tie, zero])
    second = np.concatenate([maps[::-1] * 0.7, -np.ones((1, h, w)) - rng.random((1, h, w)), maps[:1]])
    second[3, 9, 0] = 5.0  # on the left border, interior row
    second[4, 0, 6] = 5.0  # on the top border
    return np.stack([first, second]).astype(np.float32)


# --------------------------------------------------------------------------- geometry


def test_box_to_center_scale_matches_mmpose():
    boxes = np.array([[10, 20, 50, 120], [0, 0, 100, 10], [-30.5, 50, 60, 140], [5, 5, 5 + 48, 5 + 64]], np.float64)
    for aspect in (192 / 256, 288 / 384, 1.0, 1.7):
        center, scale = pose.box_to_center_scale(torch.from_numpy(boxes), aspect)
        ref_c, ref_s = np_bbox_xyxy2cs_fixed(boxes, aspect)
        np.testing.assert_allclose(center.numpy(), ref_c, atol=1e-9)
        np.testing.assert_allclose(scale.numpy(), ref_s, rtol=1e-12)
    assert pose.box_to_center_scale(torch.tensor([[0, 0, 4, 8]]), 0.5)[1].dtype == torch.float32


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_warp_matrix_matches_mmpose(udp, rot):
    center = np.array([[30.0, 70.0], [50.0, 5.0], [15.5, 95.25]])
    scale = np.array([[93.75, 125.0], [125.0, 166.7], [120.0, 160.0]])
    out_h, out_w = 64, 48  # non-square: catches an (H, W) / (w, h) mix-up
    ours = pose.warp_matrix(torch.from_numpy(center), torch.from_numpy(scale), (out_h, out_w), rot=rot, udp=udp)
    ours_inv = pose.warp_matrix(torch.from_numpy(center), torch.from_numpy(scale), (out_h, out_w), rot=rot,
                                udp=udp, inv=True)
    for i in range(len(center)):
        if udp:
            ref = np_get_udp_warp_matrix(center[i], scale[i], rot, (out_w, out_h))
            ref_inv = np.linalg.inv(np.vstack([ref, [0, 0, 1]]))[:2]
        else:
            ref = np_get_warp_matrix(center[i], scale[i], rot, (out_w, out_h))
            ref_inv = np_get_warp_matrix(center[i], scale[i], rot, (out_w, out_h), inv=True)
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=1e-9)
        np.testing.assert_allclose(ours_inv[i].numpy(), ref_inv, atol=1e-9)
    single = pose.warp_matrix(torch.tensor([30.0, 70.0]), torch.tensor([93.75, 125.0]), (out_h, out_w),
                              rot=rot, udp=udp)
    assert single.shape == (2, 3) and single.dtype == torch.float32


def test_warp_matrix_maps_box_onto_crop():
    # Non-UDP: the centre goes to the crop centre, the box's left/right edge mid-points to x = 0 / w.
    center = torch.tensor([[40.0, 60.0]], dtype=torch.float64)
    scale = torch.tensor([[30.0, 40.0]], dtype=torch.float64)
    m = pose.warp_matrix(center, scale, (64, 48))[0]
    assert m.dtype == torch.float64
    pts = torch.tensor([[40.0, 60.0, 1.0], [25.0, 60.0, 1.0], [55.0, 40.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pts @ m.T, torch.tensor([[24.0, 32.0], [0.0, 32.0], [48.0, 0.0]], dtype=torch.float64))
    # UDP: the box corners go to pixel 0 and pixel size - 1.
    m = pose.warp_matrix(center, scale, (64, 48), udp=True)[0]
    pts = torch.tensor([[25.0, 40.0, 1.0], [55.0, 80.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pts @ m.T, torch.tensor([[0.0, 0.0], [47.0, 63.0]], dtype=torch.float64))


def _smooth_image(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, h, w, generator=g) * 255


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("rot", [0.0, 30.0])
def test_crop_matches_opencv(udp, rot):
    cv2 = pytest.importorskip("cv2")
    image = _smooth_image(3, 90, 70)
    # inside, partly outside (left and bottom), a thin box (aspect fix), tiny (upsampling)
    boxes = torch.tensor([[10.0, 20, 50, 80], [-30, 50, 40, 120], [0, 0, 70, 8], [30, 30, 36, 40]])
    center, scale = pose.box_to_center_scale(boxes, 48 / 64)
    out_h, out_w = 64, 48
    crops = pose.crop(image, center, scale, (out_h, out_w), rot=rot, udp=udp)
    assert crops.shape == (4, 3, out_h, out_w)
    matrices = pose.warp_matrix(center.double(), scale.double(), (out_h, out_w), rot=rot, udp=udp)
    hwc = image.permute(1, 2, 0).contiguous().numpy()
    ref = np.stack([cv2.warpAffine(hwc, m.numpy(), (out_w, out_h), flags=cv2.INTER_LINEAR) for m in matrices])
    ref = torch.from_numpy(ref).permute(0, 3, 1, 2)
    # OpenCV interpolates on a 1/32-pixel grid of weights; on 0..255 noise that stays well under 0.05
    assert (crops - ref).abs().max().item() < 0.05
    # uint8 images: OpenCV's uint8 warp rounds; ours, rounded, lands within 1 grey level
    u8 = image.round().to(torch.uint8)
    ours_u8 = pose.crop(u8, center, scale, (out_h, out_w), rot=rot, udp=udp).round()
    hwc8 = u8.permute(1, 2, 0).contiguous().numpy()
    ref8 = np.stack([cv2.warpAffine(hwc8, m.numpy(), (out_w, out_h), flags=cv2.INTER_LINEAR) for m in matrices])
    assert (ours_u8 - torch.from_numpy(ref8).permute(0, 3, 1, 2).float()).abs().max().item() <= 1


def test_crop_batched_images_and_index():
    a, b = _smooth_image(3, 40, 30, seed=1), _smooth_image(3, 40, 30, seed=2)
    center, scale = torch.tensor([[15.0, 20], [10, 12], [20, 25]]), torch.tensor([[24.0, 32], [12, 16], [30, 40]])
    batched = pose.crop(torch.stack([a, b]), center, scale, (16, 12), image_index=torch.tensor([1, 0, 1]))
    single = [pose.crop(img, center[i:i + 1], scale[i:i + 1], (16, 12)) for i, img in enumerate([b, a, b])]
    torch.testing.assert_close(batched, torch.cat(single))
    # the identity crop (mmpose's warp takes the centre W / 2 to w / 2) reproduces the image
    ident = pose.crop(a, torch.tensor([[15.0, 20.0]]), torch.tensor([[30.0, 40.0]]), (40, 30))
    torch.testing.assert_close(ident[0], a, atol=1e-2, rtol=0)  # float32 grid: ~1e-5 px off
    with pytest.raises(ValueError, match="image_index"):
        pose.crop(torch.stack([a, b, a, b]), center, scale, (16, 12))


# --------------------------------------------------------------------------- heatmaps


def test_flip_heatmaps_matches_mmpose(edge_heatmaps):
    hm = edge_heatmaps
    flip_indices = list(range(hm.shape[1]))[::-1]
    for shift in (True, False):
        ours = pose.flip_heatmaps(torch.from_numpy(hm), flip_indices, shift=shift)
        np.testing.assert_array_equal(ours.numpy(), np_flip_heatmaps(hm, flip_indices, shift))
    coco = np.random.default_rng(1).random((2, 17, 8, 6)).astype(np.float32)
    ours = pose.flip_heatmaps(torch.from_numpy(coco), COCO_KEYPOINTS.flip_indices)
    np.testing.assert_array_equal(ours.numpy(), np_flip_heatmaps(coco, list(COCO_KEYPOINTS.flip_indices), True))


@pytest.mark.parametrize("ksize", [3, 5, 7, 9, 11, 17])
def test_blur_kernel_matches_opencv(ksize):
    cv2 = pytest.importorskip("cv2")
    if ksize == 9 and int(cv2.__version__.split(".")[0]) >= 5:
        pytest.skip("OpenCV 5 tabulates a fixed 9-tap kernel; mmpose runs OpenCV 4 (fixed kernels up to 7)")
    ours = pose.opencv_gaussian_kernel(ksize, torch.float64).numpy()
    np.testing.assert_allclose(ours, cv2.getGaussianKernel(ksize, 0)[:, 0], atol=1e-12)
    np.testing.assert_allclose(np_opencv_gaussian_kernel(ksize), cv2.getGaussianKernel(ksize, 0)[:, 0], atol=1e-12)
    # the reference blur used below is OpenCV's (default BORDER_REFLECT_101)
    img = np.random.default_rng(ksize).random((20, 15)).astype(np.float32)
    np.testing.assert_allclose(np_cv_gaussian_blur(img, ksize), cv2.GaussianBlur(img, (ksize, ksize), 0), atol=1e-6)


@pytest.mark.parametrize("ksize", [3, 11])
def test_modulate_matches_mmpose_gaussian_blur(edge_heatmaps, ksize):
    hm = edge_heatmaps[:, :-1]  # the all-zero map is 0 / 0 = NaN in both; covered by the decode tests
    ours = pose.modulate_heatmaps(torch.from_numpy(hm), ksize).numpy()
    ref = np.stack([np_gaussian_blur(m.copy(), ksize) for m in hm])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_heatmap_maximum_quirks(edge_heatmaps):
    locs, vals = pose.heatmap_maximum(torch.from_numpy(edge_heatmaps))
    for n in range(edge_heatmaps.shape[0]):
        ref_locs, ref_vals = np_heatmap_maximum(edge_heatmaps[n])
        np.testing.assert_array_equal(locs[n].numpy(), ref_locs)
        np.testing.assert_array_equal(vals[n].numpy(), ref_vals)
    assert locs[0, -2].tolist() == [0.0, 0.0]  # tie: the first maximum
    assert locs[0, -1].tolist() == [-1.0, -1.0] and vals[0, -1] == 0  # flat zero
    assert locs[1, -2].tolist() == [-1.0, -1.0] and vals[1, -2] < 0  # negative


@pytest.mark.parametrize("method", ["msra", "dark", "udp"])
@pytest.mark.parametrize("input_size", [(64, 48), (256, 192)])
def test_decode_matches_mmpose(edge_heatmaps, method, input_size):
    ours_kps, ours_scores = pose.decode_heatmaps(torch.from_numpy(edge_heatmaps), input_size, method)
    assert ours_kps.shape == (*edge_heatmaps.shape[:2], 2)
    with np.errstate(all="ignore"):  # mmpose's 0 / 0 on the all-zero map
        refs = [np_decode(m, input_size[::-1], method) for m in edge_heatmaps]
    ref_kps = np.concatenate([r[0] for r in refs])
    ref_scores = np.concatenate([r[1] for r in refs])
    np.testing.assert_array_equal(ours_scores.numpy(), ref_scores)
    np.testing.assert_allclose(ours_kps.numpy(), ref_kps, rtol=1e-5, atol=1e-4, equal_nan=True)
    if method != "udp":
        # -1 stays -1 before scaling, with no refinement
        scale = np.array(input_size[::-1]) / np.array(edge_heatmaps.shape[-1:-3:-1])
        np.testing.assert_allclose(ours_kps[0, -1].numpy(), -scale)
        np.testing.assert_allclose(ours_kps[1, -2].numpy(), -scale)


def test_msra_quarter_shift_conditions():
    h, w = 8, 8
    hm = np.zeros((1, 6, h, w), np.float32)
    # (x, y) of the maximum, a higher right and lower neighbour where they exist
    spots = [(1, 4), (w - 1, 4), (4, 0), (4, h - 1), (0, 4), (4, 4)]
    for k, (x, y) in enumerate(spots):
        hm[0, k, y, x] = 1.0
        if x + 1 < w:
            hm[0, k, y, x + 1] = 0.5
        if y + 1 < h:
            hm[0, k, y + 1, x] = 0.5
    kps, _ = pose.decode_heatmaps(torch.from_numpy(hm), (h, w), "msra")  # input = heatmap size: scale 1
    ref, _ = np_decode(hm[0], (w, h), "msra")
    np.testing.assert_array_equal(kps.numpy(), ref)
    assert kps[0, 0].tolist() == [1.0, 4.25]  # x = 1: no x shift (mmpose needs 1 < x)
    assert kps[0, 5].tolist() == [4.25, 4.25]
    assert kps[0, 2].tolist() == [4.0, 0.0]  # y = 0: no shift at all (the x move needs 0 < y)
    assert kps[0, 3].tolist() == [4.25, float(h - 1)]  # y = h - 1: x moves, y does not


def test_dark_and_udp_recover_subpixel_gaussians():
    h, w = 64, 48
    centres = [(10.3, 20.7), (30.55, 40.1), (24.0, 32.0)]
    hm = torch.from_numpy(gaussian_maps(h, w, centres, sigma=2.0)).float()[None]
    kps, _ = pose.decode_heatmaps(hm, (h, w), "dark")
    assert (kps[0] - torch.tensor(centres)).abs().max() < 0.02
    kps, _ = pose.decode_heatmaps(hm, (h - 1, w - 1), "udp")  # (input - 1) / (heatmap - 1) = 1
    assert (kps[0] - torch.tensor(centres)).abs().max() < 0.02


# --------------------------------------------------------------------------- end to end


class DotModel(nn.Module):
    """A stand-in pose network: keypoint c is the bright Gaussian dot in input channel c of the crop.

    It undoes the normalisation, finds each channel's intensity centroid (crop pixels) and renders
    an exact Gaussian there on the stride-4 heatmap grid of the given codec.
    """

    head_type = "pose"

    def __init__(self, codec: str = "msra", mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), channel_order="RGB") -> None:
        super().__init__()
        self.codec = codec
        self.weight = nn.Parameter(torch.zeros(1))  # gives predict a device and dtype
        # 32x24 heatmaps: big enough that the DARK blur's zero padding does not bend the Gaussians
        self.pretrained_cfg = {"input_size": (3, 128, 96), "mean": mean, "std": std, "channel_order": channel_order}
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.num_keypoints = 3
        self.calls = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert not self.training
        pixels = (x * self.std + self.mean).clamp_min(0)
        b, k, in_h, in_w = pixels.shape
        ys, xs = torch.meshgrid(torch.arange(in_h, dtype=x.dtype), torch.arange(in_w, dtype=x.dtype), indexing="ij")
        mass = pixels.sum(dim=(-2, -1)).clamp_min(1e-9)
        cx = (pixels * xs).sum(dim=(-2, -1)) / mass
        cy = (pixels * ys).sum(dim=(-2, -1)) / mass
        h, w = in_h // 4, in_w // 4
        if self.codec == "udp":
            hx, hy = cx * (w - 1) / (in_w - 1), cy * (h - 1) / (in_h - 1)
        else:
            hx, hy = cx * w / in_w, cy * h / in_h
        gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        d2 = (gx - hx[..., None, None]) ** 2 + (gy - hy[..., None, None]) ** 2
        return torch.exp(-d2 / (2 * 2.0 ** 2))


DOTS = [(33.3, 45.7), (50.6, 72.2), (41.1, 58.9)]
BOX = [[20.0, 30, 65, 90]]


def dot_image(dots=DOTS, h: int = 120, w: int = 100, sigma: float = 2.5, peak: float = 250 / 255) -> torch.Tensor:
    """(3, h, w) black float image in [0, 1] with one Gaussian dot per channel at the (x, y) in ``dots``."""
    return torch.from_numpy(gaussian_maps(h, w, dots, sigma=sigma, peak=peak)).float()


@pytest.mark.parametrize("codec,method,flip",
                         [("msra", "dark", False), ("msra", "dark", True), ("udp", "udp", False), ("udp", "udp", True)])
def test_predict_recovers_dots(codec, method, flip):
    # every dot at least 3 heatmap pixels inside every crop, where the heatmaps are whole Gaussians
    image = dot_image()
    # inside the image, partly outside it (left/top), one widened by the aspect fix
    boxes = torch.tensor([[20.0, 30, 65, 90], [-10, -5, 70, 95], [25, 35, 60, 82]])
    model = DotModel(codec)
    result = pose.predict(model, image, boxes, flip=flip, method=method, batch_size=2, flip_indices=[0, 1, 2])
    assert not model.training  # mode untouched
    assert model.calls == (4 if flip else 2)  # batches of 2, and the flipped crops
    assert result.keypoints.shape == (3, 3, 2) and result.scores.shape == (3, 3)
    assert torch.equal(result.boxes, boxes) and result.box_scores is None and len(result) == 3
    expected = torch.tensor(DOTS).expand(3, 3, 2).clone()
    if flip and codec == "msra":
        # mmpose's flip test is biased for MSRA heatmaps: the flipped crop's heatmap, flipped back and
        # shifted one pixel, peaks 1/4 heatmap pixel right of the plain one, so the average 1/8 right.
        scale = pose.box_to_center_scale(boxes, 96 / 128)[1]
        expected[..., 0] += (0.125 * scale[:, 0] / 24).unsqueeze(-1)
    err = (result.keypoints - expected).abs().max().item()
    assert err < 0.05, err
    assert result.scores.min() > 0.9


def test_predict_msra_and_uint8_defaults():
    image = (dot_image() * 255).round().to(torch.uint8)
    model = DotModel("msra")
    keypoints = pose.predict(model, image, torch.tensor(BOX), flip=False).keypoints
    # argmax + quarter shift: within a quarter heatmap pixel (1 input pixel, * box / input size)
    scale = pose.box_to_center_scale(torch.tensor(BOX), 96 / 128)[1][0]
    assert ((keypoints[0] - torch.tensor(DOTS)).abs() <= 0.25 * scale / torch.tensor([24.0, 32.0]) + 0.05).all()
    # no pretrained_cfg and no head: resolve_data_config's 224x224, ImageNet statistics; flip needs indices
    del model.pretrained_cfg
    model.mean.copy_(torch.tensor(pose.IMAGENET_MEAN).view(1, 3, 1, 1))
    model.std.copy_(torch.tensor(pose.IMAGENET_STD).view(1, 3, 1, 1))
    with pytest.raises(ValueError, match="flip_indices=.*flip=False"):
        pose.predict(model, image, torch.tensor(BOX))
    result = pose.predict(model, image, BOX, flip=False, method="dark")
    assert (result.keypoints[0] - torch.tensor(DOTS)).abs().max() < 0.15
    assert result.keypoint_names is None and result.skeleton == ()
    empty = pose.predict(model, image, torch.zeros(0, 4))
    assert empty.keypoints.shape == (0, 3, 2) and empty.scores.shape == (0, 3) and empty.boxes.shape == (0, 4)


# --------------------------------------------------------------------------- the input contract, boxes, results


def test_predict_takes_every_image_form_alike(tmp_path):
    """The same picture as a float / uint8 tensor, numpy RGB / BGR (cv2), PIL and a file: the same keypoints."""
    pil = pytest.importorskip("PIL.Image")
    model = DotModel("msra")
    image = dot_image()
    u8 = (image * 255).round().to(torch.uint8)
    hwc = u8.permute(1, 2, 0).numpy()
    pil.fromarray(hwc).save(tmp_path / "dots.png")
    reference = pose.predict(model, u8.float() / 255, BOX, flip=False).keypoints
    forms = {"uint8 tensor": (u8, "RGB"), "numpy RGB": (hwc, "RGB"), "numpy BGR": (hwc[..., ::-1], "BGR"),
             "PIL": (pil.fromarray(hwc), "RGB"), "path": (str(tmp_path / "dots.png"), "RGB")}
    for name, (form, order) in forms.items():
        keypoints = pose.predict(model, form, BOX, flip=False, channel_order=order).keypoints
        torch.testing.assert_close(keypoints, reference, atol=1e-4, rtol=0, msg=name)
    # the old contract's [0, 255] floats are refused, not mis-read
    with pytest.raises(ValueError, match="divide by 255"):
        pose.predict(model, u8.float(), BOX)
    # BGR taken as RGB would swap keypoints 0 and 2: the dots sit 20-30 px apart
    swapped = pose.predict(model, hwc[..., ::-1].copy(), BOX, flip=False).keypoints
    assert (swapped[0, 0] - reference[0, 2]).abs().max() < 1e-3


def test_bgr_model_gets_bgr_input():
    # a cfg with channel_order "BGR" wants the network input in BGR: channel 0 is then the blue dot
    model = DotModel("msra", channel_order="BGR")
    rgb = pose.predict(DotModel("msra"), dot_image(), BOX, flip=False).keypoints
    bgr = pose.predict(model, dot_image(), BOX, flip=False).keypoints
    torch.testing.assert_close(bgr, rgb.flip(1))


def test_boxes_forms_scores_and_formats():
    model = DotModel("msra")
    image = dot_image()
    xyxy = np.array([[20.0, 30, 65, 90], [25, 35, 60, 82]])
    scores = np.array([0.9, 0.4])
    reference = pose.predict(model, image, torch.from_numpy(xyxy), flip=False)
    with_scores = np.concatenate([xyxy, scores[:, None]], axis=1)  # (N, 5) detector output
    for boxes in (with_scores, with_scores.tolist(), torch.from_numpy(with_scores)):
        result = pose.predict(model, image, boxes, flip=False)
        assert len(result) == 2  # (2, 5) once became 3 garbage boxes
        torch.testing.assert_close(result.keypoints, reference.keypoints)
        torch.testing.assert_close(result.box_scores, torch.tensor([0.9, 0.4]))
    xywh = xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    coco = pose.predict(model, image, xywh, bbox_format="xywh", flip=False)
    torch.testing.assert_close(coco.keypoints, reference.keypoints)
    torch.testing.assert_close(coco.boxes, reference.boxes)
    # no boxes: the whole image as one box, as mmpose's inference_topdown
    whole = pose.predict(model, image, flip=False)
    torch.testing.assert_close(whole.boxes, torch.tensor([[0.0, 0.0, 100.0, 120.0]]))
    one = pose.predict(model, image, [0, 0, 100, 120], flip=False)  # one flat box
    torch.testing.assert_close(one.keypoints, whole.keypoints)


def test_batches_of_images_and_box_sets():
    model = DotModel("msra")
    image = dot_image()
    other = dot_image([(20.0, 20.0), (30.0, 40.0), (25.0, 30.0)], h=60, w=50)
    results = pose.predict(model, [image, other], [BOX, None], flip=False)
    assert isinstance(results, list) and len(results) == 2
    torch.testing.assert_close(results[0].keypoints, pose.predict(model, image, BOX, flip=False).keypoints)
    torch.testing.assert_close(results[1].keypoints, pose.predict(model, other, None, flip=False).keypoints)
    assert results[1].image_size == (60, 50)
    stacked = pose.predict(model, torch.stack([image, image]), [BOX, BOX], flip=False)
    assert len(stacked) == 2 and torch.equal(stacked[0].keypoints, stacked[1].keypoints)
    with pytest.raises(ValueError, match="1 box sets for 2 images"):
        pose.predict(model, [image, other], [BOX])
    with pytest.raises(ValueError, match="one box set each"):
        pose.predict(model, [image, other], torch.tensor(BOX))


@pytest.mark.parametrize("kwargs,error,fix", [
    ({"boxes": [[10, 10, 10, 50], [5, 5, 40, 40], [30, 10, 20, 50]]}, ValueError, r"width / height: \[0, 2\]"),
    ({"boxes": [[5, 5, 40, 40], [float("nan"), 0, 9, 9]]}, ValueError, r"NaN / Inf coordinates: \[1\]"),
    ({"boxes": [[5, 5, 40, 40], [200, 10, 260, 50], [-50, -50, -10, -10]]}, ValueError, r"outside the 100x120 image: \[1, 2\]"),
    ({"boxes": [[30, 40, 20, 30]]}, ValueError, "bbox_format='xywh'"),
    ({"boxes": torch.zeros(4, 3)}, ValueError, r"\(N, 5\) with detector scores"),
    ({"boxes": "0 0 9 9"}, TypeError, "boxes must be"),
    ({"bbox_format": "cxcywh"}, ValueError, "'xywh'"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ({"batch_size": 2.5}, ValueError, "batch_size"),
    ({"input_size": (256,)}, ValueError, r"input_size must be \(H, W\)"),
    ({"input_size": (0, 48)}, ValueError, "input_size"),
    ({"method": "argmax"}, ValueError, "method must be one of"),
    ({"flip": "yes"}, TypeError, "flip must be"),
])
def test_predict_refusals(kwargs, error, fix):
    kwargs = {"boxes": BOX, **kwargs}
    with pytest.raises(error, match=fix):
        pose.predict(DotModel("msra"), dot_image(), kwargs.pop("boxes"), **kwargs)


def test_result_to_json_has_no_bare_nan():
    result = pose.PoseResult(
        keypoints=torch.tensor([[[1.0, float("nan")]]]), scores=torch.tensor([[float("inf")]]),
        boxes=torch.tensor([[0.0, 0, 5, 5]]), box_scores=torch.tensor([0.5]), keypoint_names=("nose",),
        skeleton=(), image_size=(8, 6),
    )
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["instances"][0] == {"box": [0, 0, 5, 5], "box_score": 0.5, "keypoints": [[1.0, None]],
                                                "keypoint_scores": [None]}


# --------------------------------------------------------------------------- the model: never mutated, right task


@pytest.fixture(scope="module")
def tiny_pose_model():
    torch.manual_seed(0)
    config = hrformer.config.HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)
    model = hrformer.HRFormer(config, head="pose", num_keypoints=17).eval()
    model.pretrained_cfg = {"input_size": (3, 64, 48)}
    return model


def test_train_mode_and_other_heads_refused(tiny_pose_model):
    image = torch.rand(3, 40, 30)
    tiny_pose_model.train()
    try:
        with pytest.raises(ValueError, match=r"model\.eval\(\)"):
            pose.predict(tiny_pose_model, image)
        assert tiny_pose_model.training  # refused, not switched
    finally:
        tiny_pose_model.eval()
    config = hrformer.config.HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)
    for head in ("segmentation", "classification"):
        other = hrformer.HRFormer(config, head=head, num_classes=17).eval()
        with pytest.raises(ValueError, match="pose needs a model with a pose head"):
            pose.predict(other, image, flip=False)


def test_two_threads_share_one_model(tiny_pose_model):
    import threading

    image = torch.rand(3, 40, 30, generator=torch.Generator().manual_seed(1))
    boxes = [[0, 0, 30, 40], [5, 5, 25, 30]]
    expected = pose.predict(tiny_pose_model, image, boxes)
    assert expected.keypoint_names == COCO_KEYPOINTS.names
    outputs, errors = {}, []

    def run(i: int) -> None:
        try:
            outputs[i] = [pose.predict(tiny_pose_model, image, boxes).keypoints]
        except Exception as err:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    intra_op = torch.get_num_threads()
    torch.set_num_threads(1)  # two Python threads on a small machine: no OpenMP oversubscription
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(intra_op)
    assert not errors, errors
    for runs in outputs.values():
        for keypoints in runs:
            torch.testing.assert_close(keypoints, expected.keypoints, atol=0, rtol=0)
    assert not tiny_pose_model.training


# --------------------------------------------------------------------------- metadata, drawing, CLI


def test_coco_keypoint_info():
    info = COCO_KEYPOINTS
    assert info.num_keypoints == 17 and len(info.skeleton) == 19
    assert info.flip_indices == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert info.skeleton[0] == (15, 13) and info.skeleton[-1] == (4, 6)
    assert info.sigmas[0] == 0.026 and info.sigmas[-1] == 0.089
    with pytest.raises(ValueError):
        KeypointInfo(names=("a", "b"), skeleton=((0, 2),), flip_indices=(0, 1), sigmas=(0.1, 0.1))


def test_draw_pose():
    pytest.importorskip("PIL")
    from hrformer.draw import draw_pose

    image = torch.zeros(3, 40, 30, dtype=torch.uint8)
    keypoints = torch.tensor([[[5.0, 5.0], [25.0, 35.0], [15.0, 20.0]]])
    picture = draw_pose(image, keypoints, torch.tensor([[0.9, 0.8, 0.1]]), [(0, 1), (1, 2)])
    assert picture.size == (30, 40) and picture.mode == "RGB"
    assert picture.getpixel((5, 5)) != (0, 0, 0)  # a visible keypoint
    assert picture.getpixel((15, 20)) != (0, 0, 0)  # on the 0-1 limb
    assert picture.getpixel((15, 20)) != (255, 0, 0)  # ... but keypoint 2 scores too low for a dot
    # a PoseResult: its skeleton, boxes and box scores too; float images in [0, 1]
    result = pose.PoseResult(keypoints=keypoints, scores=torch.tensor([[0.9, 0.8, 0.1]]),
                             boxes=torch.tensor([[2.0, 2.0, 27.0, 37.0]]), box_scores=torch.tensor([0.75]),
                             keypoint_names=None, skeleton=((0, 1), (1, 2)), image_size=(40, 30))
    drawn = draw_pose(image.float() / 255, result)
    assert drawn.getpixel((15, 20)) == picture.getpixel((15, 20))
    assert drawn.getpixel((2, 20)) == (255, 255, 255)  # the box's left edge
    with pytest.raises(ValueError, match="divide by 255"):
        draw_pose(image.float() + 2, result)


def test_a_fused_model_predicts_the_same_keypoints(tiny_pose_model):
    import copy

    image = torch.rand(3, 40, 30, generator=torch.Generator().manual_seed(2))
    fused = copy.deepcopy(tiny_pose_model).fuse_for_inference()
    assert not any(m.training for m in fused.modules())  # fusing leaves no module in training mode
    torch.testing.assert_close(pose.predict(fused, image).keypoints, pose.predict(tiny_pose_model, image).keypoints,
                               rtol=1e-4, atol=1e-3)
