"""What `seqtool decode` writes, for every task: text hypotheses (one per line, or the n-best layout) or
predicted frames, to a file or standard output, and the plots of --plot-attention / --plot.

A task names the layout of its outputs with one of the two values below (`Task.decode_output`)::

    Text(labelled=False)      translation   TEXT                     one line per input
    Text(labelled=True)       captioning    NAME<TAB>TEXT
    Text(blocks=True)         char LM       TEXT, a blank line between samples (texts span lines)
    with --nbest N (beam) or --num N (sampling), every hypothesis:   NAME<TAB>SCORE<TAB>TEXT
    Frames()                  video         predictions as .npy in the input's layout, strips and GIFs

Text is written and flushed input chunk by input chunk, so a pipe on standard input gets each answer
at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from seqtool.data.io import open_output, writing
from seqtool.decode.generate import Decoded, DecodeInput
from seqtool.decode.settings import DecodeOptions, SearchSettings
from seqtool.progress import warn

if TYPE_CHECKING:
    from seqtool.tasks.base import Task


@dataclass(frozen=True)
class Text:
    """Hypotheses as text lines (see the module's table)."""

    labelled: bool = False  # one-best lines start with the input's label
    blocks: bool = False  # samples of several lines, a blank line between them, no scores
    reads_prime: bool = False  # --prime is an input (char LM, translation); elsewhere it is refused
    predicts_frames: ClassVar[bool] = False  # --horizon is refused

    def write(self, task: Task, model: nn.Module, options: DecodeOptions, search: SearchSettings) -> None:
        several = search.strategy.nbest > 1 or search.strategy.copies(options.num) > 1
        plotted = written = memory_plots = 0
        plot_memory = getattr(task, "plot_memory", None)  # tasks whose models may carry an external memory
        with open_output(options.output) as out:
            for chunk in task.decode_inputs(model, options, search):
                for item, decoded in zip(chunk, task.decode(model, chunk, search)):
                    out.write(self._lines(task, item, decoded, several, first=written == 0))
                    written += 1
                    if options.plot_dir is not None and item.copy == 0:
                        with writing(options.plot_dir):
                            plotted += task.plot_attention(item, decoded, options.plot_dir)
                    if options.memory_dir is not None and item.copy == 0 and plot_memory is not None:
                        with writing(options.memory_dir):
                            memory_plots += plot_memory(model, item, decoded, options.memory_dir)
                out.flush()
        if options.plot_dir is not None and not plotted:
            warn("this model reports no attention weights, so --plot-attention wrote nothing")
        if options.memory_dir is not None and not memory_plots:
            warn("this model has no external memory, so --plot-memory wrote nothing")

    def _lines(self, task: Task, item: DecodeInput, decoded: Decoded, several: bool, *, first: bool) -> str:
        if self.blocks:
            return ("" if first else "\n") + task.render(item, decoded.tokens[0]) + "\n"
        if several:
            return "".join(f"{item.label}\t{score:.4f}\t{task.render(item, tokens)}\n"
                           for tokens, score in zip(decoded.tokens, decoded.scores))  # fmt: skip
        text = task.render(item, decoded.tokens[0])
        return f"{item.label}\t{text}\n" if self.labelled else f"{text}\n"


@dataclass(frozen=True)
class Frames:
    """Predicted frames: --output as .npy (the input's layout and dtype), --plot strips and GIFs, and a
    summary line with the MSE against the truth when the input holds it."""

    reads_prime: ClassVar[bool] = False
    predicts_frames: ClassVar[bool] = True  # --horizon sets how many

    def write(self, task: Task, model: nn.Module, options: DecodeOptions, search: SearchSettings) -> None:
        from seqtool.data import moving_mnist
        from seqtool.decode.rollout import describe, write_plots

        for chunk in task.decode_inputs(model, options, search):
            for item, predictions in zip(chunk, task.decode(model, chunk, search)):
                clip: Any = item.value  # seqtool.tasks.video.DecodeClip
                if options.output is not None:
                    moving_mnist.save_sequences(predictions, clip.layout, clip.as_uint8, options.output)
                if options.plot_dir is not None:
                    with writing(options.plot_dir):
                        write_plots(clip.inputs, clip.truth, predictions, options.plot_dir)
                print(describe(clip.inputs, clip.truth, predictions, options.output))
