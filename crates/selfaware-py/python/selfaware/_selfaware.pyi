"""Type stubs of the native module (crates/selfaware-py/src/lib.rs)."""

from typing import List, Optional, Tuple

__version__: str

class SelfawareError(Exception):
    """An error of selfaware, with the command line's message."""

class Model:
    def __init__(
        self,
        model: str = "default",
        adapter: Optional[str] = None,
        api_key_env: Optional[str] = None,
        estimate: bool = False,
        home: Optional[str] = None,
    ) -> None: ...
    @property
    def reference(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    def score_json(self, messages_json: str, options: List[str]) -> str: ...
    def score_many_json(
        self, messages_json: List[str], options: List[List[str]], concurrency: Optional[int] = None
    ) -> List[str]: ...
    def score_range_json(self, messages_json: str, lo: int, hi: int) -> str: ...
    def sample(
        self,
        messages_json: str,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 64,
        seed: int = 0,
    ) -> List[str]: ...
    def activations(
        self, conversations_json: List[str], points: List[str], positions: str
    ) -> Tuple[List[Tuple[str, bytes]], int, int, List[int], List[int], List[str]]: ...

def cli_main(argv: List[str]) -> int: ...
