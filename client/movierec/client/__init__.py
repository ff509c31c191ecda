"""movierec client SDK: talk to a `movierec serve` server from Python (no torch needed).

from movierec.client import Client
with Client("localhost:50051") as client:
    recs = client.recommend([1, 2], k=10)          # Recommendations: one list per user
    recs[0].movie_ids, recs[0].scores               # numpy arrays
    recs.to_pandas()
    client.recommend_for_ratings({50: 5.0, 172: 4.0}, k=5)   # ratings on client.model_info().rating_scale
    client.predict({50: 5.0}, [181, 1])             # Predictions
    # cold start: a new user described by a profile (ratings optional), and movies added while serving
    client.recommend_for_ratings({}, k=5, profile={"age": 25, "gender": "F", "occupation": "student"})
    client.upsert_movies([{"movie_id": 5000, "title": "New", "year": 2024, "genres": "Comedy|Drama"}])
    client.model_info().side_information            # what the model knows besides ratings
"""

from movierec.client._aio import AsyncClient
from movierec.client._bulk import SCHEMA as BULK_SCHEMA
from movierec.client._bulk import BulkChunk, ScoreAllResult, spread_score_all
from movierec.client._errors import MovieRecError
from movierec.client._options import DEFAULT_TARGET, DEFAULT_TIMEOUT_S
from movierec.client._results import (
    ModelInfo,
    MovieMatches,
    Movies,
    Predictions,
    RatingScale,
    RatingsQuery,
    Recommendation,
    Recommendations,
    RecommendQuery,
    ServerLimits,
    SideInformation,
    StreamResult,
    UpsertResult,
)
from movierec.client._sync import Client

__all__ = [
    "BULK_SCHEMA",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_S",
    "AsyncClient",
    "BulkChunk",
    "Client",
    "ModelInfo",
    "MovieMatches",
    "MovieRecError",
    "Movies",
    "Predictions",
    "RatingScale",
    "RatingsQuery",
    "RecommendQuery",
    "Recommendation",
    "Recommendations",
    "ScoreAllResult",
    "ServerLimits",
    "SideInformation",
    "spread_score_all",
    "StreamResult",
    "UpsertResult",
]
