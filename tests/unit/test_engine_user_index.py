"""LoadedModel.user_index: the per-call user lookup (id arithmetic when user ids are consecutive, the IdMap
otherwise) gives the same dense indices and the same NOT_FOUND as validation.users_to_index."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from movierec.core.sparse import IdMap
from movierec.server import validation as v
from movierec.server.engine import LoadedModel
from movierec.server.errors import ErrorCode, RequestError


def model(user_ids: list[int]) -> LoadedModel:
    scorer = SimpleNamespace(
        users=IdMap(np.array(user_ids, dtype=np.int64)),
        items=IdMap(np.array([10, 20, 30], dtype=np.int64)),
        catalog=SimpleNamespace(titles=["a", "b", "c"]),
        info=SimpleNamespace(version="v1"),
    )
    return LoadedModel.of(scorer)  # type: ignore[arg-type]


@pytest.mark.parametrize("users", [[1, 2, 3, 4, 5], [7, 8, 9], [2, 5, 9, 11], [9, 3, 5]])
def test_same_answers_as_the_id_map(users: list[int]) -> None:
    m = model(users)
    assert (m.first_user is not None) == (users == list(range(users[0], users[0] + len(users))))
    for ids in ([users[0]], [users[-1]], users, users[::-1], [users[1], users[1]]):
        arr = np.array(ids, dtype=np.int64)
        np.testing.assert_array_equal(m.user_index(arr), v.users_to_index(arr, m.scorer.users))


@pytest.mark.parametrize("users", [[1, 2, 3, 4, 5], [2, 5, 9, 11]])
@pytest.mark.parametrize("ids", [[0], [6], [12], [1, 6], [-3, 2], [2**62]])
def test_unknown_users_not_found(users: list[int], ids: list[int]) -> None:
    m = model(users)
    arr = np.array(ids, dtype=np.int64)
    with pytest.raises(RequestError) as info:
        v.users_to_index(arr, m.scorer.users)
    with pytest.raises(RequestError) as fast:
        m.user_index(arr)
    assert fast.value.code == info.value.code == ErrorCode.NOT_FOUND
    assert fast.value.message == info.value.message
