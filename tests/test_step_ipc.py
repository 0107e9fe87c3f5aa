"""ipc: kernel parity with a slow reference, deconvolution recovers truth, NaN kernels, oracle."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe.datamodels import IPCModel, RampModel
from jwpipe.errors import ReferenceFileError
from jwpipe.steps.ipc import (
    IPCStep,
    ReferenceBorder,
    ipc_convolve,
    prepare_kernel,
    read_variance_scale,
    reference_border,
)

KERNEL = np.array([[0.0, -0.005, 0.0], [-0.005, 1.02, -0.005], [0.0, -0.005, 0.0]], np.float32)


def slow_ipc(image, kernel, border):
    """The reference pipeline's loop over kernel offsets, in float64 (per-pixel kernels too)."""
    out = np.array(image, dtype=np.float64)
    ny, nx = image.shape
    y0, y1 = border.bottom_rows, ny - border.top_rows
    x0, x1 = border.left_columns, nx - border.right_columns
    sci = out[y0:y1, x0:x1].copy()
    ky, kx = kernel.shape[:2]
    bb, lb = ky // 2, kx // 2
    pad = np.zeros((sci.shape[0] + ky - 1, sci.shape[1] + kx - 1))
    pad[bb:bb + sci.shape[0], lb:lb + sci.shape[1]] = sci
    acc = np.zeros_like(sci)
    for j in range(ky):
        for i in range(kx):
            acc += np.asarray(kernel[j, i], np.float64) * \
                pad[ky - 1 - j:ky - 1 - j + sci.shape[0], kx - 1 - i:kx - 1 - i + sci.shape[1]]
    out[y0:y1, x0:x1] = acc
    return out


def forward_ipc(image, alpha=0.01):
    """True IPC: each pixel leaks ``alpha`` of its charge to each of its 4 neighbours."""
    out = image * (1 - 4 * alpha)
    out[1:] += alpha * image[:-1]
    out[:-1] += alpha * image[1:]
    out[:, 1:] += alpha * image[:, :-1]
    out[:, :-1] += alpha * image[:, 1:]
    return out


def inverse_kernel(alpha=0.01, size=9):
    """The deconvolution kernel of :func:`forward_ipc`, from its transfer function."""
    n = 64
    k = np.zeros((n, n))
    k[0, 0] = 1 - 4 * alpha
    k[1, 0] = k[-1, 0] = k[0, 1] = k[0, -1] = alpha
    inv = np.fft.ifft2(1.0 / np.fft.fft2(k)).real
    h = size // 2
    return np.roll(np.roll(inv, h, 0), h, 1)[:size, :size].astype(np.float32)


@pytest.mark.parametrize("shape,border", [((40, 56), ReferenceBorder(4, 4, 4, 4)),
                                          ((33, 47), ReferenceBorder(0, 3, 2, 0)),
                                          ((16, 16), ReferenceBorder(0, 0, 0, 0))])
@pytest.mark.parametrize("ksize", [(3, 3), (3, 5), (4, 2)])
def test_kernel_matches_slow_reference(shape, border, ksize):
    rng = np.random.default_rng(0)
    images = rng.normal(100, 30, (3,) + shape).astype(np.float32)
    kernel = rng.normal(0, 0.02, ksize).astype(np.float32)
    kernel[ksize[0] // 2, ksize[1] // 2] = 1.0
    k4, per_pixel = prepare_kernel(kernel)
    out = images.copy()
    ipc_convolve(out, k4, per_pixel, border)
    for i in range(3):
        np.testing.assert_allclose(out[i], slow_ipc(images[i], kernel, border), rtol=2e-6,
                                   atol=2e-4)
    # Reference pixels neither change nor contribute.
    ny, nx = shape
    inner = np.zeros(shape, bool)
    inner[border.bottom_rows:ny - border.top_rows,
          border.left_columns:nx - border.right_columns] = True
    np.testing.assert_array_equal(out[:, ~inner], images[:, ~inner])
    spoiled = images.copy()
    spoiled[:, ~inner] = 1e6
    ipc_convolve(spoiled, k4, per_pixel, border)
    np.testing.assert_array_equal(spoiled[:, inner], out[:, inner])


def test_kernel_input_coercion():
    """Big-endian, read-only and non-contiguous kernels give the same result."""
    images = np.random.default_rng(5).normal(100, 10, (2, 24, 24)).astype(np.float32)
    odd = np.asfortranarray(KERNEL.astype(">f8"))
    odd.flags.writeable = False
    a, b = images.copy(), images.copy()
    ipc_convolve(a, *prepare_kernel(odd), ReferenceBorder(1, 2, 3, 0))
    ipc_convolve(b, *prepare_kernel(KERNEL), ReferenceBorder(1, 2, 3, 0))
    np.testing.assert_array_equal(a, b)
    assert not odd.flags.writeable and odd[1, 1] == KERNEL[1, 1]       # caller's array untouched


def test_per_pixel_kernel_and_threads():
    rng = np.random.default_rng(1)
    images = rng.normal(100, 30, (4, 30, 40)).astype(np.float32)
    border = ReferenceBorder(4, 0, 0, 4)
    kernel = rng.normal(0, 0.01, (3, 3, 26, 36)).astype(np.float32)
    kernel[1, 1] += 1.0
    k4, per_pixel = prepare_kernel(kernel, (26, 36))
    assert per_pixel
    one, two = images.copy(), images.copy()
    ipc_convolve(one, k4, per_pixel, border, nthreads=1)
    ipc_convolve(two, k4, per_pixel, border, nthreads=2)
    np.testing.assert_array_equal(one, two)             # threads do not change results
    want = images[0].astype(np.float64).copy()
    sci = images[0, 4:, :36].astype(np.float64)
    pad = np.pad(sci, 1)
    acc = sum(kernel[j, i] * pad[2 - j:2 - j + 26, 2 - i:2 - i + 36]
              for j in range(3) for i in range(3))
    want[4:, :36] = acc
    np.testing.assert_allclose(one[0], want, rtol=2e-6, atol=2e-4)
    # The same kernel everywhere equals the 2-D kernel.
    same = np.broadcast_to(KERNEL[:, :, None, None], (3, 3, 26, 36))
    a, b = images.copy(), images.copy()
    ipc_convolve(a, *prepare_kernel(same, (26, 36)), border)
    ipc_convolve(b, *prepare_kernel(KERNEL), border)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_deconvolution_recovers_truth():
    rng = np.random.default_rng(2)
    truth = np.zeros((64, 64))
    truth[12:-12, 12:-12] = rng.uniform(0, 1000, (40, 40))
    truth[30, 30] = 50000.0                             # a bright star spills into neighbours
    observed = forward_ipc(truth).astype(np.float32)[None]
    assert abs(observed[0, 30, 31] - truth[30, 31]) > 400
    k4, per_pixel = prepare_kernel(inverse_kernel())
    ipc_convolve(observed, k4, per_pixel, ReferenceBorder(0, 0, 0, 0))
    np.testing.assert_allclose(observed[0], truth, atol=0.02)


def test_read_noise_variance_after_deconvolution():
    """White read noise convolved with the kernel has sum(K**2) times its variance (1.0404 for
    KERNEL): checked on 4e6 samples of white noise (relative error of a variance ~1e-3, the
    tolerance 5e-3), for the 2-D kernel and a per-pixel one."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 10.0, (16, 256, 256)).astype(np.float32)
    k4, per_pixel = prepare_kernel(KERNEL)
    scale = read_variance_scale(k4, per_pixel)
    assert scale == pytest.approx(1.02 ** 2 + 4 * 0.005 ** 2, rel=1e-6)
    out = noise.copy()
    ipc_convolve(out, k4, per_pixel, ReferenceBorder(0, 0, 0, 0))
    inner = (slice(None), slice(2, -2), slice(2, -2))
    assert np.var(out[inner]) / np.var(noise[inner]) == pytest.approx(scale, rel=5e-3)
    per = np.broadcast_to(KERNEL[:, :, None, None], (3, 3, 4, 5)).copy()
    per[1, 1, 2, 3] = 1.1
    map_ = read_variance_scale(*prepare_kernel(per, (4, 5)))
    assert map_.shape == (4, 5) and map_.dtype == np.float32
    assert map_[2, 3] == pytest.approx(1.1 ** 2 + 4 * 0.005 ** 2, rel=1e-6)
    assert map_[0, 0] == pytest.approx(scale, rel=1e-6)


def test_blocks_carry_the_read_noise_scale(tmp_path):
    """The step hands the scale to later steps with each block: a number for a 2-D kernel, a
    map over the whole array (1 on the reference pixels) for a per-pixel kernel."""
    from jwpipe.steps.base import RampBlock

    ref = IPCModel(np.broadcast_to(KERNEL[:, :, None, None], (3, 3, 160, 160)).copy())
    ref.meta.reftype = "IPC"
    ref.meta.subarray.xstart = ref.meta.subarray.ystart = 1889  # the top right corner
    path = ref.save(tmp_path / "ipc4d.fits")
    model = RampModel(np.zeros((1, 2, 160, 160), np.float32))
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.subarray.xstart, meta.subarray.ystart, meta.subarray.xsize, meta.subarray.ysize = \
        1889, 1889, 160, 160
    meta.exposure.nints, meta.exposure.ngroups = 1, 2
    step = IPCStep()
    block = RampBlock.from_model(model)
    step.process_block(block, step.prepare(model, {"ipc": str(path)}))
    scale = block.extras["read_variance_scale"]
    assert scale.shape == (160, 160)
    assert (scale[-4:] == 1).all() and (scale[:, -4:] == 1).all()   # reference pixels
    np.testing.assert_allclose(scale[:-4, :-4], 1.02 ** 2 + 4 * 0.005 ** 2, rtol=1e-6)


def test_nan_in_kernels():
    images = np.random.default_rng(3).normal(100, 10, (1, 20, 20)).astype(np.float32)
    nan2 = KERNEL.copy()
    nan2[0, 1] = np.nan
    with pytest.warns(UserWarning, match="non-finite"):
        k4, _ = prepare_kernel(nan2)
    zeroed = KERNEL.copy()
    zeroed[0, 1] = 0.0
    a, b = images.copy(), images.copy()
    ipc_convolve(a, k4, False, ReferenceBorder(0, 0, 0, 0))
    ipc_convolve(b, *prepare_kernel(zeroed), ReferenceBorder(0, 0, 0, 0))
    np.testing.assert_array_equal(a, b)
    bad_centre = KERNEL.copy()
    bad_centre[1, 1] = np.nan
    with pytest.raises(ReferenceFileError, match="centre"):
        prepare_kernel(bad_centre)
    per = np.broadcast_to(KERNEL[:, :, None, None], (3, 3, 20, 20)).copy()
    per[0, 0, 7, 9] = np.nan
    out = images.copy()
    ipc_convolve(out, *prepare_kernel(per, (20, 20)), ReferenceBorder(0, 0, 0, 0))
    assert out[0, 7, 9] == images[0, 7, 9]              # that pixel is left uncorrected
    assert np.isfinite(out).all()
    with pytest.raises(ReferenceFileError):
        prepare_kernel(np.ones((3, 3, 5)))


def test_reference_border_geometry():
    assert reference_border(1, 1, 2048, 2048) == ReferenceBorder(4, 4, 4, 4)
    assert reference_border(1889, 1889, 160, 160) == ReferenceBorder(0, 4, 0, 4)
    assert reference_border(500, 500, 64, 64) == ReferenceBorder(0, 0, 0, 0)
    assert reference_border(1, 1, 1032, 1024, miri=True) == ReferenceBorder(0, 0, 4, 4)
    assert reference_border(413, 51, 256, 256, miri=True) == ReferenceBorder(0, 0, 0, 0)


def test_step_with_4d_reference_on_subarray(tmp_path):
    # A per-pixel kernel file covering detector rows/columns 551-750 / 651-850 (SUBSTRT1/2),
    # cut to a subarray without reference pixels inside it.
    rng = np.random.default_rng(4)
    full = np.zeros((3, 3, 200, 200), np.float32)
    full[1, 1] = 1.0
    full[:, :, 50:90, 50:110] += rng.normal(0, 0.01, (3, 3, 40, 60)).astype(np.float32)
    ref = IPCModel(np.ascontiguousarray(full))
    ref.meta.reftype = "IPC"
    ref.meta.subarray.xstart, ref.meta.subarray.ystart = 651, 551
    path = ref.save(tmp_path / "ipc4d.fits")
    data = rng.normal(100, 10, (1, 2, 40, 60)).astype(np.float32)
    model = RampModel(data.copy())
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.subarray.xstart, meta.subarray.ystart, meta.subarray.xsize, meta.subarray.ysize = \
        701, 601, 60, 40
    meta.exposure.nints, meta.exposure.ngroups = 1, 2
    result = IPCStep(overrides={"ipc": str(path)}).run(model)
    assert result.meta.cal_step.ipc == "COMPLETE"
    np.testing.assert_array_equal(model.data, data)
    want = slow_ipc(data[0, 1], full[:, :, 50:90, 50:110], ReferenceBorder(0, 0, 0, 0))
    np.testing.assert_allclose(result.data[0, 1], want, rtol=2e-6, atol=2e-4)
    skipped = IPCStep(overrides={"ipc": "N/A"}).run(model)
    assert skipped.meta.cal_step.ipc == "SKIPPED"


def test_oracle_sub160_chain(nircam_oracle):
    """Replay the reference pipeline's IPC -> superbias -> refpix -> linearity -> dark on the
    SUB160 oracle with our ipc and refpix steps, and compare every pixel of its _ramp.

    Superbias, linearity and dark are applied here by hand (their jwpipe steps are tested in
    their own files); saturation only decides which groups linearity skips, taken from the
    oracle's GROUPDQ. The jump step does not change data.
    """
    from astropy.io import fits

    from jwpipe import dq
    from jwpipe.references import open_reference
    from jwpipe.steps.refpix import RefPixStep

    refs = nircam_oracle["refs"]
    model = IPCStep().open_input(nircam_oracle["uncal"])
    model.pixeldq = np.asarray(open_reference(refs["mask"], "mask").dq, np.uint32)
    raw = model.data.copy()
    after_ipc = IPCStep(overrides={"ipc": refs["ipc"]}).run(model)
    assert after_ipc.meta.cal_step.ipc == "COMPLETE"
    np.testing.assert_array_equal(model.data, raw)
    bias = np.nan_to_num(np.asarray(open_reference(refs["superbias"], "superbias").data))
    after_ipc.data = after_ipc.data - bias
    corrected = RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"}).run(after_ipc)
    lin = open_reference(refs["linearity"], "linearity")
    coeffs = np.asarray(lin.coeffs, np.float64)
    x = corrected.data.astype(np.float64)
    poly = np.zeros_like(x)
    for c in coeffs[::-1]:
        poly = poly * x + c
    oracle = fits.open(nircam_oracle["ramp"])
    saturated = (oracle["GROUPDQ"].data & dq.SATURATED) != 0
    no_lin = (np.asarray(lin.dq) & dq.NO_LIN_CORR) != 0
    linear = np.where(saturated | no_lin, x, poly)
    dark = np.nan_to_num(np.asarray(open_reference(refs["dark"], "dark").data))[:10]
    ours = (linear - dark).astype(np.float32)
    want = oracle["SCI"].data
    diff = np.abs(ours - want)
    # float32 rounding of ~1e4 DN values: a few ulp
    assert diff.max() < 0.01
    assert np.median(diff) < 1e-4
