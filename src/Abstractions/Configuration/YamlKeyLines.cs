using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace DaemonEye.Configuration;

/// <summary>The line of every key of a YAML configuration file, by configuration path (<c>broker:max_subscribers</c>, <c>collectors:0:id</c>), so a message can say <c>file PATH:LINE</c>.</summary>
internal static class YamlKeyLines
{
    public static IReadOnlyDictionary<string, int> Read(string? path)
    {
        var lines = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        if (path is null || !File.Exists(path))
        {
            return lines;
        }

        try
        {
            var stream = new YamlStream();
            using (var reader = File.OpenText(path))
            {
                stream.Load(reader);
            }

            if (stream.Documents.Count > 0)
            {
                Walk(stream.Documents[0].RootNode, null, lines);
            }
        }
        catch (Exception ex) when (ex is YamlException or IOException or UnauthorizedAccessException)
        {
            // The loader reports a file that does not parse; without lines, messages name the file alone.
        }

        return lines;
    }

    private static void Walk(YamlNode node, string? path, Dictionary<string, int> lines)
    {
        switch (node)
        {
            case YamlMappingNode mapping:
                foreach (var (key, value) in mapping.Children)
                {
                    var child = path is null ? (key as YamlScalarNode)?.Value ?? string.Empty : path + ":" + (key as YamlScalarNode)?.Value;
                    lines.TryAdd(child, (int)key.Start.Line);
                    Walk(value, child, lines);
                }

                break;
            case YamlSequenceNode sequence:
                for (var i = 0; i < sequence.Children.Count; i++)
                {
                    var child = path + ":" + i.ToString(CultureInfo.InvariantCulture);
                    lines.TryAdd(child, (int)sequence.Children[i].Start.Line);
                    Walk(sequence.Children[i], child, lines);
                }

                break;
        }
    }
}
