"""A variable's DataType and ValueRank, as the write rules and the Write service need them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames

from gateway.writes import PlcType, boolean, floating, integer, string, unsupported

VT = ua.VariantType
# What is read per writable variable at connect, in this order.
TYPE_ATTRIBUTES = (AttributeIds.DataType, AttributeIds.ValueRank, AttributeIds.ArrayDimensions)

# The built-in DataTypes a command can write (their node ids in namespace 0 equal the
# VariantType numbers).
BUILTIN: dict[int, tuple[ua.VariantType, PlcType]] = {
    VT.Boolean.value: (VT.Boolean, boolean("Boolean")),
    VT.SByte.value: (VT.SByte, integer("SByte", 8, signed=True)),
    VT.Byte.value: (VT.Byte, integer("Byte", 8, signed=False)),
    VT.Int16.value: (VT.Int16, integer("Int16", 16, signed=True)),
    VT.UInt16.value: (VT.UInt16, integer("UInt16", 16, signed=False)),
    VT.Int32.value: (VT.Int32, integer("Int32", 32, signed=True)),
    VT.UInt32.value: (VT.UInt32, integer("UInt32", 32, signed=False)),
    VT.Int64.value: (VT.Int64, integer("Int64", 64, signed=True)),
    VT.UInt64.value: (VT.UInt64, integer("UInt64", 64, signed=False)),
    VT.Float.value: (VT.Float, floating("Float", 32)),
    VT.Double.value: (VT.Double, floating("Double", 64)),
    VT.String.value: (VT.String, string("String")),
}


@dataclass(frozen=True, slots=True)
class VariableType:
    """What a variable holds: the write rules' PlcType and the Variant type to send."""

    plc: PlcType
    variant: ua.VariantType | None  # None: a type the gateway does not write


def variable_type(
    data_type: ua.DataValue, value_rank: ua.DataValue, dimensions: ua.DataValue
) -> VariableType | None:
    """The type of a variable from its DataType, ValueRank and ArrayDimensions attributes.

    None when the server did not give a DataType (not a variable, or the read was refused).
    """
    dtype = _value(data_type)
    if not isinstance(dtype, ua.NodeId):
        return None
    found = None
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        found = BUILTIN.get(dtype.Identifier)
    if found is None:
        return VariableType(unsupported(_type_name(dtype)), None)
    variant, plc = found
    rank = _value(value_rank)
    if rank is None or rank in (ua.ValueRank.Scalar, ua.ValueRank.Any):
        return VariableType(plc, variant)
    if rank == ua.ValueRank.ScalarOrOneDimension:
        return VariableType(plc, variant)  # the scalar form: what setpoints are
    if rank != ua.ValueRank.OneDimension:
        return VariableType(unsupported(f"{plc.name} of {rank} dimensions"), None)
    lengths = _value(dimensions)
    length = int(lengths[0]) if isinstance(lengths, list) and lengths and lengths[0] else None
    return VariableType(replace(plc, array=True, array_length=length), variant)


def variant(kind: VariableType, value: object) -> ua.Variant:
    """The Variant that carries a value the write rules accepted, in the variable's type."""
    if kind.variant is None:
        raise ValueError(f"writing a {kind.plc.name} is not supported")
    return ua.Variant(value, kind.variant, is_array=kind.plc.array)


def _value(data: ua.DataValue) -> object:
    if data.StatusCode is not None and not data.StatusCode.is_good():
        return None
    return data.Value.Value if data.Value is not None else None


def _type_name(dtype: ua.NodeId) -> str:
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return str(ObjectIdNames.get(dtype.Identifier, dtype.to_string()))
    return str(dtype.to_string())
