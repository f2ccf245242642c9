"""Human verification of the judge (`mixnu eval annotate`): a local page where people score a sample.

- `items.py`: the run folder's items (`AnnotationItem`, `load_items`) and the stratified sample (`draw_sample`);
- `store.py`: `RUN_DIR/annotations.sqlite` (`AnnotationStore`): the sample and every score, as it is given;
- `app.py`: the page's HTTP side (`AnnotationApp`, `make_server`);
- `session.py`: the entry points re-exported here (`open_session`, `serve_annotation`, `export_annotations`).
"""

from mixnu.eval.annotate.app import AnnotationApp, make_server
from mixnu.eval.annotate.items import AnnotationItem, ShownResponse, draw_sample, load_items
from mixnu.eval.annotate.session import (
    DB_NAME,
    AnnotateConfig,
    AnnotateResult,
    AnnotationSession,
    ExportResult,
    create_app,
    export_annotations,
    open_session,
    serve_annotation,
)
from mixnu.eval.annotate.store import AnnotationStore
from mixnu.eval.criteria import CRITERIA

__all__ = ["CRITERIA", "DB_NAME", "AnnotateConfig", "AnnotateResult", "AnnotationApp", "AnnotationItem",
           "AnnotationSession", "AnnotationStore", "ExportResult", "ShownResponse", "create_app", "draw_sample",
           "export_annotations", "load_items", "make_server", "open_session", "serve_annotation"]
