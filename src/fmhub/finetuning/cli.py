"""``fmhub finetune NAME [--plan] --train DATA [--eval DATA] --output DIR [-c KEY=VALUE ...]``."""

from __future__ import annotations

import json

from ..errors import FmhubError


def _config(pairs) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FmhubError(f"--config takes KEY=VALUE, got {pair!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def run(model, args) -> int:
    from . import finetune, finetune_plan

    config = _config(args.config)
    if args.plan:
        print(finetune_plan(model, args.method, **config))
        return 0
    if not args.train:
        raise FmhubError("fmhub finetune needs --train DATA (or --plan to only show the plan)")
    if args.output:
        config["output_dir"] = args.output
    result = finetune(model, args.train, eval=args.eval, method=args.method, **config)
    evaluation = None
    if args.eval:  # the final model, reported by the same code as `fmhub eval`
        import sys

        from ..evaluation import evaluate

        report = evaluate(model, args.eval, batch_size=config.get("batch_size"),
                          progress=config.get("progress"))
        print(report, file=sys.stderr)
        evaluation = report.model_dump(mode="json")
    print(json.dumps({
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "metrics": result.metrics,
        "best": result.best,
        "stopped_early": result.stopped_early,
        "adapter": str(result.adapter_path) if result.adapter_path else None,
        "evaluation": evaluation,
    }, indent=2))
    return 0
