"""The pprof schema (`perftools.profiles.Profile`), built at run time from its descriptor.

Generated, not written by hand: the serialized `FileDescriptorProto` of google/pprof's public
`proto/profile.proto` at commit b9395ee17fa0d0013c3fd96ac9482318422ac337, made with

    python -m grpc_tools.protoc -I. --descriptor_set_out=profile.desc profile.proto

(grpcio-tools 1.85.1, libprotoc 35.1), then `FileDescriptorSet.file[0]` serialized
deterministically and base64-encoded. A descriptor is the schema as data: unlike generated
`profile_pb2.py` code it carries no protoc/runtime version check, so any `protobuf` release
that can read descriptors (all of 3.x to 7.x) builds the same message classes from it.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

_DESCRIPTOR = (
    "Cg1wcm9maWxlLnByb3RvEhJwZXJmdG9vbHMucHJvZmlsZXMijgUKB1Byb2ZpbGUSPgoLc2FtcGxlX3R5cGUYASAD"
    "KAsyHS5wZXJmdG9vbHMucHJvZmlsZXMuVmFsdWVUeXBlUgpzYW1wbGVUeXBlEjIKBnNhbXBsZRgCIAMoCzIaLnBl"
    "cmZ0b29scy5wcm9maWxlcy5TYW1wbGVSBnNhbXBsZRI1CgdtYXBwaW5nGAMgAygLMhsucGVyZnRvb2xzLnByb2Zp"
    "bGVzLk1hcHBpbmdSB21hcHBpbmcSOAoIbG9jYXRpb24YBCADKAsyHC5wZXJmdG9vbHMucHJvZmlsZXMuTG9jYXRp"
    "b25SCGxvY2F0aW9uEjgKCGZ1bmN0aW9uGAUgAygLMhwucGVyZnRvb2xzLnByb2ZpbGVzLkZ1bmN0aW9uUghmdW5j"
    "dGlvbhIhCgxzdHJpbmdfdGFibGUYBiADKAlSC3N0cmluZ1RhYmxlEh8KC2Ryb3BfZnJhbWVzGAcgASgDUgpkcm9w"
    "RnJhbWVzEh8KC2tlZXBfZnJhbWVzGAggASgDUgprZWVwRnJhbWVzEh0KCnRpbWVfbmFub3MYCSABKANSCXRpbWVO"
    "YW5vcxIlCg5kdXJhdGlvbl9uYW5vcxgKIAEoA1INZHVyYXRpb25OYW5vcxI+CgtwZXJpb2RfdHlwZRgLIAEoCzId"
    "LnBlcmZ0b29scy5wcm9maWxlcy5WYWx1ZVR5cGVSCnBlcmlvZFR5cGUSFgoGcGVyaW9kGAwgASgDUgZwZXJpb2QS"
    "GAoHY29tbWVudBgNIAMoA1IHY29tbWVudBIuChNkZWZhdWx0X3NhbXBsZV90eXBlGA4gASgDUhFkZWZhdWx0U2Ft"
    "cGxlVHlwZRIXCgdkb2NfdXJsGA8gASgDUgZkb2NVcmwiMwoJVmFsdWVUeXBlEhIKBHR5cGUYASABKANSBHR5cGUS"
    "EgoEdW5pdBgCIAEoA1IEdW5pdCJwCgZTYW1wbGUSHwoLbG9jYXRpb25faWQYASADKARSCmxvY2F0aW9uSWQSFAoF"
    "dmFsdWUYAiADKANSBXZhbHVlEi8KBWxhYmVsGAMgAygLMhkucGVyZnRvb2xzLnByb2ZpbGVzLkxhYmVsUgVsYWJl"
    "bCJYCgVMYWJlbBIQCgNrZXkYASABKANSA2tleRIQCgNzdHIYAiABKANSA3N0chIQCgNudW0YAyABKANSA251bRIZ"
    "CghudW1fdW5pdBgEIAEoA1IHbnVtVW5pdCLXAgoHTWFwcGluZxIOCgJpZBgBIAEoBFICaWQSIQoMbWVtb3J5X3N0"
    "YXJ0GAIgASgEUgttZW1vcnlTdGFydBIhCgxtZW1vcnlfbGltaXQYAyABKARSC21lbW9yeUxpbWl0Eh8KC2ZpbGVf"
    "b2Zmc2V0GAQgASgEUgpmaWxlT2Zmc2V0EhoKCGZpbGVuYW1lGAUgASgDUghmaWxlbmFtZRIZCghidWlsZF9pZBgG"
    "IAEoA1IHYnVpbGRJZBIjCg1oYXNfZnVuY3Rpb25zGAcgASgIUgxoYXNGdW5jdGlvbnMSIwoNaGFzX2ZpbGVuYW1l"
    "cxgIIAEoCFIMaGFzRmlsZW5hbWVzEigKEGhhc19saW5lX251bWJlcnMYCSABKAhSDmhhc0xpbmVOdW1iZXJzEioK"
    "EWhhc19pbmxpbmVfZnJhbWVzGAogASgIUg9oYXNJbmxpbmVGcmFtZXMingEKCExvY2F0aW9uEg4KAmlkGAEgASgE"
    "UgJpZBIdCgptYXBwaW5nX2lkGAIgASgEUgltYXBwaW5nSWQSGAoHYWRkcmVzcxgDIAEoBFIHYWRkcmVzcxIsCgRs"
    "aW5lGAQgAygLMhgucGVyZnRvb2xzLnByb2ZpbGVzLkxpbmVSBGxpbmUSGwoJaXNfZm9sZGVkGAUgASgIUghpc0Zv"
    "bGRlZCJTCgRMaW5lEh8KC2Z1bmN0aW9uX2lkGAEgASgEUgpmdW5jdGlvbklkEhIKBGxpbmUYAiABKANSBGxpbmUS"
    "FgoGY29sdW1uGAMgASgDUgZjb2x1bW4iigEKCEZ1bmN0aW9uEg4KAmlkGAEgASgEUgJpZBISCgRuYW1lGAIgASgD"
    "UgRuYW1lEh8KC3N5c3RlbV9uYW1lGAMgASgDUgpzeXN0ZW1OYW1lEhoKCGZpbGVuYW1lGAQgASgDUghmaWxlbmFt"
    "ZRIdCgpzdGFydF9saW5lGAUgASgDUglzdGFydExpbmVCLQodY29tLmdvb2dsZS5wZXJmdG9vbHMucHJvZmlsZXNC"
    "DFByb2ZpbGVQcm90b2IGcHJvdG8z"
)


@cache
def profile_class() -> Any:
    """The `perftools.profiles.Profile` message class (imports `protobuf` on first use)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(_DESCRIPTOR))
    pool = descriptor_pool.DescriptorPool()  # our own pool: no clash with another copy
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))
