using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Process.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>ps --tree</c>: procmond's snapshot arranged by parent. A process whose ppid is not in the
/// snapshot (pid 1, kernel threads' parent 0, a parent that exited) is a root. Children in pid order.
/// </summary>
internal static class ProcessTree
{
    /// <summary>The roots and each pid's children, pids ascending.</summary>
    public static (List<ProcessInfo> Roots, ILookup<uint, ProcessInfo> Children) Build(ProcessSnapshot snapshot)
    {
        var pids = snapshot.Processes.Select(p => p.Pid).ToHashSet();
        var ordered = snapshot.Processes.OrderBy(p => p.Pid).ToList();
        var children = ordered.Where(p => p.Ppid != p.Pid && pids.Contains(p.Ppid)).ToLookup(p => p.Ppid);
        var roots = ordered.Where(p => p.Ppid == p.Pid || !pids.Contains(p.Ppid)).ToList();
        return (roots, children);
    }

    private static string Label(ProcessInfo p) =>
        string.Create(CultureInfo.InvariantCulture, $"{p.Pid} {p.Name} ({(p.User.Length > 0 ? p.User : p.Uid.ToString(CultureInfo.InvariantCulture))}, {p.CpuPercent:0.0}% cpu, {PsCommand.Size(p.RssBytes)})");

    /// <summary>A Spectre tree on a terminal; on a pipe one process a line, indented two spaces a level.</summary>
    public static IRenderable Render(IAnsiConsole console, ProcessSnapshot snapshot)
    {
        var (roots, children) = Build(snapshot);
        if (!console.IsTerminal())
        {
            var text = new StringBuilder();
            void Line(ProcessInfo p, int depth)
            {
                text.Append(' ', 2 * depth).Append(Label(p)).Append('\n');
                foreach (var child in children[p.Pid])
                {
                    Line(child, depth + 1);
                }
            }

            foreach (var root in roots)
            {
                Line(root, 0);
            }

            return new Text(text.ToString());
        }

        var tree = new Tree(new Markup($"[bold]processes[/] [grey]({snapshot.Processes.Count} from {Markup.Escape(snapshot.CollectorId)})[/]")).Guide(TreeGuide.Line);
        void Add(IHasTreeNodes parent, ProcessInfo p)
        {
            var node = parent.AddNode(new Markup($"[bold]{p.Pid}[/] [cyan]{Markup.Escape(p.Name)}[/] [grey]{Markup.Escape(Label(p)[(p.Pid.ToString(CultureInfo.InvariantCulture).Length + p.Name.Length + 2)..])}[/]"));
            foreach (var child in children[p.Pid])
            {
                Add(node, child);
            }
        }

        foreach (var root in roots)
        {
            Add(tree, root);
        }

        return tree;
    }

    /// <summary>The roots as a JSON array; each process has ps --json's fields and a children array.</summary>
    public static string ToJson(ProcessSnapshot snapshot)
    {
        var (roots, children) = Build(snapshot);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, ProtoJson.Indented))
        {
            void Write(ProcessInfo p)
            {
                w.WriteStartObject();
                PsCommand.WriteProcessFields(w, p);
                w.WriteStartArray("children");
                foreach (var child in children[p.Pid])
                {
                    Write(child);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteStartArray();
            foreach (var root in roots)
            {
                Write(root);
            }

            w.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length) + "\n";
    }
}
