using System.CommandLine;
using DaemonEye.Topics;

namespace DaemonEye.Cli.Commands;

/// <summary><c>topic validate</c> and <c>topic match</c>: the topic rules, offline.</summary>
internal static class TopicCommands
{
    public static Command Build(CliContext context)
    {
        var topic = new Command("topic", "Check topics and patterns against the topic rules (no agent needed)");
        topic.Subcommands.Add(BuildValidate(context));
        topic.Subcommands.Add(BuildMatch(context));
        return topic;
    }

    private static Command BuildValidate(CliContext context)
    {
        var value = new Argument<string>("topic") { Description = "The topic (or, with --pattern, the pattern) to check" };
        var pattern = new Option<bool>("--pattern") { Description = "Check a subscription pattern ('+' and a final '#' allowed) instead of a concrete topic" };
        var command = new Command("validate", "Exit 0 when valid; 2 with the reason on stderr when not");
        command.Arguments.Add(value);
        command.Options.Add(pattern);
        command.SetAction(parse =>
        {
            var text = parse.GetValue(value)!;
            var isPattern = parse.GetValue(pattern);
            var result = isPattern ? TopicRules.ValidatePattern(text) : TopicRules.ValidateTopic(text);
            if (!result.IsValid)
            {
                context.Error.WriteLine($"invalid {(isPattern ? "pattern" : "topic")} '{text}': {result.Error}");
                return CliApplication.Invalid;
            }

            context.Output.WriteLine($"valid {(isPattern ? "pattern" : "topic")}: {text}");
            return CliApplication.Ok;
        });
        return command;
    }

    private static Command BuildMatch(CliContext context)
    {
        var pattern = new Argument<string>("pattern") { Description = "A subscription pattern" };
        var topic = new Argument<string>("topic") { Description = "A concrete topic" };
        var command = new Command("match", "Exit 0 when the pattern matches the topic, 1 when not, 2 when either is invalid");
        command.Arguments.Add(pattern);
        command.Arguments.Add(topic);
        command.SetAction(parse =>
        {
            var p = parse.GetValue(pattern)!;
            var t = parse.GetValue(topic)!;
            var invalid = false;
            if (TopicRules.ValidatePattern(p) is { IsValid: false } pv)
            {
                context.Error.WriteLine($"invalid pattern '{p}': {pv.Error}");
                invalid = true;
            }

            if (TopicRules.ValidateTopic(t) is { IsValid: false } tv)
            {
                context.Error.WriteLine($"invalid topic '{t}': {tv.Error}");
                invalid = true;
            }

            if (invalid)
            {
                return CliApplication.Invalid;
            }

            if (TopicRules.Matches(p, t))
            {
                context.Output.WriteLine($"'{p}' matches '{t}'");
                return CliApplication.Ok;
            }

            context.Output.WriteLine($"'{p}' does not match '{t}'");
            return CliApplication.No;
        });
        return command;
    }
}
