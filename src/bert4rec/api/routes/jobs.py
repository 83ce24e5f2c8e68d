"""Training jobs over HTTP (enabled by `serve --jobs-dir`): POST/GET /jobs, GET/DELETE /jobs/{id},
and POST /model to serve a finished job's model. The work is `bert4rec.jobs.JobStore`'s."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from bert4rec.api.deps import freeze_heap, load_served
from bert4rec.api.schemas import ErrorResponse
from bert4rec.errors import ArtifactError
from bert4rec.inference.recommender import Recommender
from bert4rec.jobs import Job, JobLimitError, JobNotFoundError, JobStateError, JobStatus, JobStore
from bert4rec.payload import PayloadError, TrainingPayload

router = APIRouter(tags=["jobs"])


def get_jobs(request: Request) -> JobStore:
    """The app's job store (set by `create_app` when jobs are enabled)."""
    jobs: JobStore = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobStore, Depends(get_jobs)]


class JobProgress(BaseModel):
    """What the training process last reported (null before training starts)."""

    stage: str | None = Field(
        default=None, description="training, then trained (evaluation and saving follow)."
    )
    epoch: int | None = Field(
        default=None, description="Epoch in progress, 1-based (once trained: epochs done)."
    )
    max_epochs: int | None = None
    step: int | None = Field(default=None, description="Optimizer steps so far.")
    elapsed_s: float | None = Field(default=None, description="Seconds of training so far.")
    val_ndcg_at_10: float | None = Field(
        default=None, alias="val_ndcg@10", description="Latest validation NDCG@10 (full ranking)."
    )
    best_val_ndcg_at_10: float | None = Field(default=None, alias="best_val_ndcg@10")


class JobResponse(BaseModel):
    id: str
    status: JobStatus
    model_type: str
    created_at: float = Field(description="Unix time.")
    started_at: float | None
    finished_at: float | None
    elapsed_s: float | None = Field(description="Seconds since the job started (until it finished).")
    progress: JobProgress | None
    metrics: dict[str, Any] | None = Field(
        description="Once succeeded: test-split metrics (full and sampled), best_val_ndcg@10, epochs, "
        "train_seconds."
    )
    bundle: str | None = Field(description="Once succeeded: the model folder (serve it with POST /model).")
    error: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, job: Job) -> JobResponse:
        return cls(
            id=job.id,
            status=job.status,
            model_type=job.model_type,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            elapsed_s=job.elapsed_s,
            progress=JobProgress.model_validate(job.progress) if job.progress else None,
            metrics=job.result,
            bundle=job.bundle,
            error=job.error,
            payload=job.payload,
        )


class JobList(BaseModel):
    jobs: list[JobResponse]


class ServeRequest(BaseModel):
    job_id: str = Field(description="A succeeded job whose model to serve from now on.")


class ServedModel(BaseModel):
    job_id: str
    bundle: str
    model_type: str
    n_items: int


def _payload_422(err: PayloadError) -> HTTPException:
    detail = [{"loc": ["body", field], "msg": msg, "type": "payload"} for field, msg in err.errors]
    return HTTPException(status_code=422, detail=detail)


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No job with this id."}
}


# the body is read as a plain object so that bert4rec.payload names bad fields in its own words (the
# closest valid name for a typo); the documented schema is the payload's
_PAYLOAD_SCHEMA = {"content": {"application/json": {"schema": TrainingPayload.model_json_schema()}}}


@router.post(
    "/jobs",
    status_code=202,
    openapi_extra={"requestBody": _PAYLOAD_SCHEMA},
    responses={
        422: {
            "description": "A bad payload field, named in `loc` (unknown fields get the closest valid name)."
        },
        429: {"model": ErrorResponse, "description": "Too many jobs running or queued."},
    },
)
def submit_job(
    payload: Annotated[
        dict[str, Any],
        Body(description="A training payload (the spec's field names; docs/training-payload.md)."),
    ],
    jobs: JobsDep,
    response: Response,
) -> JobResponse:
    """Queue a training job; it runs in its own process as soon as a slot is free (202 + its id)."""
    try:
        job = jobs.submit(payload)
    except PayloadError as err:
        raise _payload_422(err) from None
    except JobLimitError as err:
        raise HTTPException(status_code=429, detail=str(err)) from None
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobResponse.of(job)


@router.get("/jobs")
def list_jobs(jobs: JobsDep, status: JobStatus | None = None) -> JobList:
    """Every job, newest first (optionally only those with `status`)."""
    return JobList(jobs=[JobResponse.of(job) for job in jobs.list_jobs(status)])


@router.get("/jobs/{job_id}", responses=_NOT_FOUND)
def get_job(job_id: str, jobs: JobsDep) -> JobResponse:
    """Status, progress, final metrics and model folder of one job."""
    try:
        return JobResponse.of(jobs.get(job_id))
    except JobNotFoundError as err:
        raise HTTPException(status_code=404, detail=str(err)) from None


@router.delete(
    "/jobs/{job_id}",
    responses={**_NOT_FOUND, 409: {"model": ErrorResponse, "description": "The job has already finished."}},
)
def cancel_job(job_id: str, jobs: JobsDep) -> JobResponse:
    """Cancel a queued or running job (its training process is stopped)."""
    try:
        return JobResponse.of(jobs.cancel(job_id))
    except JobNotFoundError as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    except JobStateError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None


@router.post(
    "/model",
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorResponse,
            "description": "The job has no model (not succeeded, or it was deleted).",
        },
    },
)
def serve_job_model(body: ServeRequest, request: Request, jobs: JobsDep) -> ServedModel:
    """Serve a succeeded job's model from now on. Requests already running finish on the old model
    (each request reads the served model once, when it starts); the swap is one assignment."""
    try:
        path = jobs.bundle(body.job_id)
        current: Recommender = request.app.state.recommender
        new = load_served(path, request.app.state.settings)
        if current.content is not None:  # keep text cold start on when it was
            new.enable_content()
    except JobNotFoundError as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    except (JobStateError, ArtifactError) as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    request.app.state.recommender = new
    del current
    if request.app.state.settings.gc_freeze:
        freeze_heap()  # frees the old model and freezes the new one's objects, as at startup
    return ServedModel(
        job_id=body.job_id, bundle=str(path), model_type=new.model_type, n_items=new.vocab.n_items
    )
