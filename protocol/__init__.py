"""Pure wire protocol of Rendezvous: frames, codecs, validation, limits and ids.

Nothing here does I/O, reads the clock or touches asyncio: every function is a function of
its arguments, which is what lets the golden vectors and the fuzzer test it byte for byte.
"""
