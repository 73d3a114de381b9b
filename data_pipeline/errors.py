"""Bad input to the pipeline is the model package's InputError (also raised by its FASTA reader)."""
from dnachunker.errors import InputError as DataError

__all__ = ["DataError"]
