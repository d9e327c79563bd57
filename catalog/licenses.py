"""Model licenses that restrict or condition training other models on a model's outputs:
the one list Almanac warns from (`almanac curate` on stderr and in its dataset card).

Keys are the license identifiers the catalog records (the Hugging Face Hub's). Each
note says what the license asks, in short; it is a pointer to the license, not legal
advice, and a license missing here is not thereby cleared.
"""

from __future__ import annotations

RESTRICTS_OUTPUTS: dict[str, str] = {
    # Llama 2 Community License, 1.b.v: its outputs may not be used to improve any other
    # large language model (Llama 2 and its derivatives excepted).
    "llama2": "Llama 2's license forbids using its outputs to improve any other large "
              "language model (Llama 2 derivatives excepted)",
    # Meta Llama 3 License, 1.b.i: a model trained on its outputs and distributed must
    # carry "Llama 3" at the start of its name, under the same license terms.
    "llama3": "Llama 3's license requires a model trained on its outputs, if distributed, to "
              "be named \"Llama 3 ...\" and to follow its terms",
    # Llama 3.1 / 3.2 / 3.3 / 4 Community Licenses, 1.b.i: the same, with "Llama" at the
    # start of the name and "Built with Llama" shown.
    "llama3.1": "Llama 3.1's license requires a model trained on its outputs, if distributed, "
                "to be named \"Llama ...\" and to follow its terms",
    "llama3.2": "Llama 3.2's license requires a model trained on its outputs, if distributed, "
                "to be named \"Llama ...\" and to follow its terms",
    "llama3.3": "Llama 3.3's license requires a model trained on its outputs, if distributed, "
                "to be named \"Llama ...\" and to follow its terms",
    "llama4": "Llama 4's license requires a model trained on its outputs, if distributed, to "
              "be named \"Llama ...\" and to follow its terms",
    # Gemma Terms of Use: "Model Derivatives" include models trained on Gemma's outputs
    # to perform like it; they carry Gemma's use restrictions and terms.
    "gemma": "Gemma's terms count a model trained on its outputs as a Gemma derivative, "
             "bound by its use restrictions",
    # The RAIL family: "Derivatives of the Model" include models trained on its outputs
    # (distillation); the use restrictions of Attachment A must be passed on.
    "openrail": "the OpenRAIL license counts a model distilled from its outputs as a "
                "derivative, bound by its use restrictions",
    "openrail++": "the OpenRAIL++ license counts a model distilled from its outputs as a "
                  "derivative, bound by its use restrictions",
    "bigscience-openrail-m": "the BigScience OpenRAIL-M license counts a model distilled "
                             "from its outputs as a derivative, bound by its use restrictions",
    "bigscience-bloom-rail-1.0": "the BLOOM RAIL license counts a model distilled from its "
                                 "outputs as a derivative, bound by its use restrictions",
    "bigcode-openrail-m": "the BigCode OpenRAIL-M license counts a model distilled from its "
                          "outputs as a derivative, bound by its use restrictions",
    "creativeml-openrail-m": "the CreativeML OpenRAIL-M license counts a model distilled "
                             "from its outputs as a derivative, bound by its use restrictions",
    # DeepSeek License Agreement (RAIL-based, before the MIT releases): the same.
    "deepseek": "the DeepSeek license counts a model distilled from its outputs as a "
                "derivative, bound by its use restrictions",
    # Creative Commons NonCommercial: whether outputs are covered is unsettled; a model
    # trained on them for commercial use needs the licensor's reading.
    "cc-by-nc-4.0": "a non-commercial license (CC BY-NC 4.0): check before training a "
                    "model for commercial use on its outputs",
    "cc-by-nc-sa-4.0": "a non-commercial license (CC BY-NC-SA 4.0): check before training a "
                       "model for commercial use on its outputs",
    "cc-by-nc-nd-4.0": "a non-commercial license (CC BY-NC-ND 4.0): check before training a "
                       "model for commercial use on its outputs",
    # "other": the Hub's word for a custom license; only its text can tell.
    "other": "a custom license (\"other\"): read it before training on its outputs",
}


def output_restriction(license_id: str | None) -> str | None:
    """What the license asks of training on the model's outputs, or None if it is not
    one Almanac knows to restrict it."""
    if not license_id:
        return None
    return RESTRICTS_OUTPUTS.get(license_id.strip().lower())
