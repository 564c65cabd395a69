using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace DaemonEye.Cli.Output;

/// <summary>
/// Protobuf messages as JSON for the CLI's output: the .proto field names, every field (defaults
/// included), enums by name, bytes as base64, and every integer, 64-bit ones included, as a JSON
/// number. (The proto3 JSON mapping writes 64-bit integers as strings; the CLI's JSON is read by
/// people and jq, and the same number must have the same type in every command: docs/operator.md.)
/// Well-known types (Timestamp, Duration, Struct...) keep their proto3 JSON form.
/// </summary>
internal static class ProtoJson
{
    public static readonly JsonWriterOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    public static readonly JsonWriterOptions Indented = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The message as one JSON object.</summary>
    public static string Format(IMessage message, bool indented = false)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, indented ? Indented : Compact))
        {
            Write(writer, message);
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    public static void Write(Utf8JsonWriter writer, IMessage message)
    {
        if (message.Descriptor.File.Package == "google.protobuf")
        {
            writer.WriteRawValue(JsonFormatter.Default.Format(message), skipInputValidation: true);
            return;
        }

        writer.WriteStartObject();
        foreach (var field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            if ((field.ContainingOneof is not null || field.HasPresence) && !field.IsRepeated && !field.Accessor.HasValue(message))
            {
                continue;
            }

            writer.WritePropertyName(field.Name);
            var value = field.Accessor.GetValue(message);
            if (field.IsMap)
            {
                var valueField = field.MessageType.FindFieldByNumber(2);
                writer.WriteStartObject();
                foreach (DictionaryEntry entry in (IDictionary)value)
                {
                    writer.WritePropertyName(Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? string.Empty);
                    WriteSingle(writer, valueField, entry.Value);
                }

                writer.WriteEndObject();
            }
            else if (field.IsRepeated)
            {
                writer.WriteStartArray();
                foreach (var item in (IList)value)
                {
                    WriteSingle(writer, field, item);
                }

                writer.WriteEndArray();
            }
            else
            {
                WriteSingle(writer, field, value);
            }
        }

        writer.WriteEndObject();
    }

    private static void WriteSingle(Utf8JsonWriter writer, FieldDescriptor field, object? value)
    {
        switch (value)
        {
            case null:
                writer.WriteNullValue();
                break;
            case IMessage message:
                Write(writer, message);
                break;
            case ByteString bytes:
                writer.WriteBase64StringValue(bytes.Span);
                break;
            case string s:
                writer.WriteStringValue(s);
                break;
            case bool b:
                writer.WriteBooleanValue(b);
                break;
            case double d:
                WriteFloating(writer, d);
                break;
            case float f:
                WriteFloating(writer, f);
                break;
            case int or Enum when field.FieldType == FieldType.Enum:
                var number = Convert.ToInt32(value, CultureInfo.InvariantCulture);
                if (field.EnumType.FindValueByNumber(number) is { } known)
                {
                    writer.WriteStringValue(known.Name);
                }
                else
                {
                    writer.WriteNumberValue(number);
                }

                break;
            case int i:
                writer.WriteNumberValue(i);
                break;
            case uint u:
                writer.WriteNumberValue(u);
                break;
            case long l:
                writer.WriteNumberValue(l);
                break;
            case ulong ul:
                writer.WriteNumberValue(ul);
                break;
            default:
                writer.WriteStringValue(Convert.ToString(value, CultureInfo.InvariantCulture));
                break;
        }
    }

    /// <summary>Finite values as numbers; NaN and the infinities as the proto3 JSON strings.</summary>
    private static void WriteFloating(Utf8JsonWriter writer, double value)
    {
        if (double.IsFinite(value))
        {
            writer.WriteNumberValue(value);
        }
        else
        {
            writer.WriteStringValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
        }
    }

    /// <summary>A Timestamp as written in JSON and on a pipe: ISO 8601 UTC.</summary>
    public static string Iso(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

}
