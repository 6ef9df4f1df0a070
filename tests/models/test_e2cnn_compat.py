import numpy as np
import pytest

from invreg.models._e2cnn_compat import _hash_with_tobytes, patch_e2cnn


def test_patch_is_idempotent_and_builds_reflection_kernels():
    from e2cnn import gspaces
    from e2cnn import nn as enn

    patch_e2cnn()
    patch_e2cnn()
    space = gspaces.FlipRot2dOnR2(N=4)
    conv = enn.R2Conv(
        enn.FieldType(space, [space.trivial_repr]), enn.FieldType(space, [space.regular_repr]), 3
    )
    assert conv.basisexpansion.dimension() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tobytes_hash_matches_e2cnn_hash():
    if not hasattr(np.ndarray, "tostring"):
        pytest.skip("numpy without ndarray.tostring: e2cnn's own __hash__ cannot run")
    from e2cnn.group import dihedral_group
    from e2cnn.kernels.irreps_basis import R2FlipsDiscreteRotationsSolution, R2FlipsSolution

    patch_e2cnn()
    group = dihedral_group(4)
    irrep = next(iter(group.irreps.values()))
    basis = R2FlipsDiscreteRotationsSolution(group, irrep, irrep, 0.0, max_frequency=3)
    assert _hash_with_tobytes(basis) == type(basis).__hash__(basis)
    flips = R2FlipsSolution(2, 0, 1, 0.0, max_frequency=3)
    assert _hash_with_tobytes(flips) == type(flips).__hash__(flips)
